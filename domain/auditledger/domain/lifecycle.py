"""Statuses and lifecycles as data: one transition table per aggregate, messages rendered from it.

node state / operation: open -> pending, open/pending -> completed/failed.
batch: draft -> executing -> completed/failed, draft -> failed.
run: running -> completed/failed/interrupted, failed/interrupted -> running (resume).
Nothing leaves a status whose row in its table is empty. Status values are stored in events
and in the landscape: they never change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from .errors import InvalidTransition


class Status(StrEnum):
    """A node state's or an operation's status."""

    OPEN = "open"
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


class BatchStatus(StrEnum):
    DRAFT = "draft"
    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Lifecycle:
    """Which status may follow which, for one kind of aggregate (keys in the order told)."""

    kind: str
    moves: Mapping[str, frozenset[str]]

    def allows(self, status: str, target: str) -> bool:
        return target in self.moves.get(status, frozenset())

    def check(self, aggregate_id: object, status: str, target: str) -> None:
        """Refuse a move the table does not hold (InvalidTransition names the table)."""
        if not self.allows(status, target):
            self.refuse(aggregate_id, status, target)

    def refuse(self, aggregate_id: object, status: str, target: str) -> None:
        raise InvalidTransition(aggregate_id, self.kind, status, target, self.describe())

    @property
    def final(self) -> frozenset[str]:
        return frozenset(status for status, targets in self.moves.items() if not targets)

    def describe(self) -> str:
        """The table in words: 'open -> pending/completed/failed, ...; completed, failed are
        final', targets in the table's own order so a message reads the same every time."""
        moves = ", ".join(
            f"{status} -> {'/'.join(str(t) for t in self.moves if t in targets)}"
            for status, targets in self.moves.items()
            if targets
        )
        final = [str(status) for status in self.moves if not self.moves[status]]
        if not final:
            return moves
        return f"{moves}; {', '.join(final)} {'is' if len(final) == 1 else 'are'} final"


CALL_PARENT: Mapping[str, frozenset[str]] = {
    Status.OPEN: frozenset({Status.PENDING, Status.COMPLETED, Status.FAILED}),
    Status.PENDING: frozenset({Status.COMPLETED, Status.FAILED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
}
NODE_STATE = Lifecycle("node state", CALL_PARENT)
OPERATION = Lifecycle("operation", CALL_PARENT)
BATCH = Lifecycle(
    "batch",
    {
        BatchStatus.DRAFT: frozenset({BatchStatus.EXECUTING, BatchStatus.FAILED}),
        BatchStatus.EXECUTING: frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED}),
        BatchStatus.COMPLETED: frozenset(),
        BatchStatus.FAILED: frozenset(),
    },
)
RUN = Lifecycle(
    "run",
    {
        RunStatus.RUNNING: frozenset(
            {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.INTERRUPTED}
        ),
        RunStatus.COMPLETED: frozenset(),
        RunStatus.FAILED: frozenset({RunStatus.RUNNING}),
        RunStatus.INTERRUPTED: frozenset({RunStatus.RUNNING}),
    },
)
LIFECYCLES = {lifecycle.kind: lifecycle for lifecycle in (NODE_STATE, OPERATION, BATCH, RUN)}

OPEN = Status.OPEN
PENDING = Status.PENDING
COMPLETED = Status.COMPLETED
FAILED = Status.FAILED
TERMINAL = NODE_STATE.final


def check_transition(kind: str, aggregate_id: object, status: str, target: str) -> None:
    """The table of `kind` ('node state', 'operation', 'batch', 'run') checks the move."""
    LIFECYCLES[kind].check(aggregate_id, status, target)
