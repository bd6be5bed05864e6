"""The landscape's row invariants, as data: one CHECK constraint each, and one read check.

tables.py declares every rule as a CHECK constraint, so a database refuses a row that breaks
it. explain and export check every row they serve against the same rules (`RowRule.holds`),
so a landscape made before the constraints existed, or edited below them (a dropped CHECK,
SQLite's ignore_check_constraints), is refused with LandscapeCorrupt, never served.

The status sets come from the domain's lifecycles; a row is closed (has `completed_at`)
exactly when its status is not one of the open ones. An error call records an error or a
response (the rule CallFacts keeps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from auditledger.domain.call_parent import CALL_STATUSES, ERROR
from auditledger.domain.lifecycle import BatchStatus, RunStatus, Status

Row = Mapping[str, Any]


@dataclass(frozen=True)
class RowRule:
    """One invariant of one table: its constraint name, its words, its SQL, its check."""

    table: str
    name: str
    says: str
    sql: str
    holds: Callable[[Row], bool]

    def __str__(self) -> str:
        return f"{self.name}: {self.says}"


def _listed(values: Iterable[str]) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


def status_in(table: str, statuses: Iterable[str]) -> RowRule:
    allowed = frozenset(str(s) for s in statuses)
    return RowRule(
        table,
        f"ck_{table}_status",
        f"status is one of {', '.join(sorted(allowed))}",
        f"status IN ({_listed(allowed)})",
        lambda row: row["status"] in allowed,
    )


def closed_when_done(table: str, statuses: type[StrEnum], open_: Iterable[str]) -> RowRule:
    """completed_at is empty exactly while the status is an open one (an unknown status is
    status_in's to refuse)."""
    still_open = frozenset(str(s) for s in open_)
    done = frozenset(str(s) for s in statuses) - still_open
    return RowRule(
        table,
        f"ck_{table}_completed_at",
        f"completed_at is set when status is {' or '.join(sorted(done))}, "
        f"and empty when it is {' or '.join(sorted(still_open))}",
        f"(status IN ({_listed(still_open)}) AND completed_at IS NULL) "
        f"OR (status NOT IN ({_listed(still_open)}) AND completed_at IS NOT NULL)",
        lambda row: (row["completed_at"] is None) == (row["status"] in still_open),
    )


ERROR_CALL_SAYS_WHY = RowRule(
    "calls",
    "ck_calls_error_recorded",
    f"a call whose status is {ERROR} records an error_json or a response",
    f"status <> '{ERROR}' OR error_json IS NOT NULL OR response_ref IS NOT NULL",
    lambda row: (
        row["status"] != ERROR or row["error_json"] is not None or row["response_ref"] is not None
    ),
)

RULES: dict[str, tuple[RowRule, ...]] = {
    "runs": (
        status_in("runs", RunStatus),
        closed_when_done("runs", RunStatus, [RunStatus.RUNNING]),
    ),
    "node_states": (
        status_in("node_states", Status),
        closed_when_done("node_states", Status, [Status.OPEN, Status.PENDING]),
    ),
    "operations": (
        status_in("operations", Status),
        closed_when_done("operations", Status, [Status.OPEN, Status.PENDING]),
    ),
    "calls": (status_in("calls", CALL_STATUSES), ERROR_CALL_SAYS_WHY),
    "batches": (
        status_in("batches", BatchStatus),
        closed_when_done("batches", BatchStatus, [BatchStatus.DRAFT, BatchStatus.EXECUTING]),
    ),
}


def rules_of(table: str) -> tuple[RowRule, ...]:
    return RULES.get(table, ())


def broken(table: str, row: Row) -> RowRule | None:
    """The first rule of `table` that `row` breaks, or None when it keeps them all."""
    return next((rule for rule in rules_of(table) if not rule.holds(row)), None)
