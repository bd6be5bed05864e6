"""Event -> row changes: the landscape as a pure fold of the event log.

`fold(events)` turns domain events into a `Changes` buffer: whole rows to insert and
column patches for rows written earlier. Patches compose in log order (a later one wins per
column), and a patch on a row inserted in the same buffer is merged into that row, so a chunk
of events becomes one bulk insert per table plus a few bulk updates.

Events the landscape does not show (CallKey.CallKeyReserved, the unused `Created` classes,
event types added later for other readers) project nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import singledispatch
from typing import Any

from sqlalchemy import Table

from auditledger.domain.batch import Batch
from auditledger.domain.call_parent import (
    CallRecordedEvent,
    CompletedEvent,
    FailedEvent,
    PendingEvent,
)
from auditledger.domain.lifecycle import BatchStatus, RunStatus, Status
from auditledger.domain.node_state import NodeState
from auditledger.domain.operation import Operation
from auditledger.domain.run import Run

from .tables import LANDSCAPE_TABLES, batch_members, batches, calls, node_states, operations, runs

# The statuses as the plain words the rows hold (as the events themselves hold them).
OPEN, PENDING, COMPLETED, FAILED = (s.value for s in Status)
DRAFT, EXECUTING, BATCH_COMPLETED, BATCH_FAILED = (s.value for s in BatchStatus)
RUNNING = RunStatus.RUNNING.value

Row = dict[str, Any]
Key = Any

KEYS: dict[Table, tuple[str, ...]] = {
    table: tuple(column.name for column in table.primary_key) for table in LANDSCAPE_TABLES
}
"""Each landscape table's primary key column names, as tables.py declares them (at import)."""
TIMED = (node_states, operations)
"""Tables whose rows get duration_ms = completed_at - started_at, unless the completing
event carries the duration the engine measured (then that one)."""


def utc(moment: datetime) -> datetime:
    """A naive UTC datetime: how both SQLite and the comparisons here see a timestamp."""
    if moment.tzinfo is None:
        return moment
    if moment.tzinfo is UTC:
        return moment.replace(tzinfo=None)
    return moment.astimezone(UTC).replace(tzinfo=None)


def duration_ms(started_at: datetime, completed_at: datetime) -> float:
    return (utc(completed_at) - utc(started_at)).total_seconds() * 1000.0


@dataclass
class Changes:
    """The row changes of a run of consecutive events, ready to be written in bulk."""

    inserts: dict[Table, dict[Key, Row]] = field(default_factory=lambda: {t: {} for t in KEYS})
    patches: dict[Table, dict[Key, Row]] = field(default_factory=lambda: {t: {} for t in KEYS})

    def insert(self, table: Table, row: Row) -> None:
        """A whole new row, keyed by its table's key columns (KEYS)."""
        names = KEYS[table]
        key = row[names[0]] if len(names) == 1 else tuple(row[n] for n in names)
        self.inserts[table].setdefault(key, row)

    def patch(self, table: Table, key: Key, values: Row) -> None:
        row = self.inserts[table].get(key)
        if row is None:
            self.patches[table].setdefault(key, {}).update(values)
            return
        row.update(values)
        if table in TIMED and _derives_duration(values):
            row["duration_ms"] = duration_ms(row["started_at"], values["completed_at"])

    def needing_start(self, table: Table) -> list[Key]:
        """Keys of rows completed here but opened in an earlier chunk (duration needs it)."""
        return [k for k, v in self.patches[table].items() if _derives_duration(v)]

    def set_durations(self, table: Table, started: dict[Key, datetime]) -> None:
        for key, started_at in started.items():
            values = self.patches[table][key]
            values["duration_ms"] = duration_ms(started_at, values["completed_at"])

    def __bool__(self) -> bool:
        return any(self.inserts.values()) or any(self.patches.values())


def _derives_duration(values: Row) -> bool:
    """A completion without a measured duration: derived from the timestamps."""
    return values.get("completed_at") is not None and values.get("duration_ms") is None


def fold(events: Iterable[object]) -> Changes:
    changes = Changes()
    for domain_event in events:
        project(domain_event, changes)
    return changes


@singledispatch
def project(domain_event: object, changes: Changes) -> None:
    """Events the landscape does not show project nothing."""


@project.register
def _run_started(e: Run.RunStarted, changes: Changes) -> None:
    changes.insert(
        runs,
        {
            "run_id": str(e.originator_id),
            "status": RUNNING,
            "config_hash": e.config_hash,
            "config_json": e.config_json,
            "started_at": utc(e.timestamp),
            "completed_at": None,
        },
    )


@project.register
def _run_completed(e: Run.RunCompleted, changes: Changes) -> None:
    changes.patch(
        runs, str(e.originator_id), {"status": e.status, "completed_at": utc(e.timestamp)}
    )


@project.register
def _run_resumed(e: Run.RunResumed, changes: Changes) -> None:
    changes.patch(runs, str(e.originator_id), {"status": RUNNING, "completed_at": None})


@project.register
def _state_opened(e: NodeState.StateOpened, changes: Changes) -> None:
    changes.insert(
        node_states,
        {
            "state_id": str(e.originator_id),
            "token_id": e.token_id,
            "step_index": e.step_index,
            "attempt": e.attempt,
            "context_hash": None,
            "context_json": None,
            **_opened(e),
        },
    )


@project.register
def _operation_started(e: Operation.OperationStarted, changes: Changes) -> None:
    changes.insert(
        operations,
        {"operation_id": str(e.originator_id), "operation_type": e.operation_type, **_opened(e)},
    )


def _opened(e: NodeState.StateOpened | Operation.OperationStarted) -> Row:
    """The columns a node state and an operation share when they open."""
    return {
        "run_id": str(e.run_id),
        "node_id": e.node_id,
        "status": OPEN,
        "input_hash": e.input_hash,
        "output_hash": None,
        "error_json": None,
        "started_at": utc(e.timestamp),
        "completed_at": None,
        "duration_ms": None,
    }


def _call_row(e: CallRecordedEvent, state_id: str | None, operation_id: str | None) -> Row:
    return {
        "call_id": e.call_id,
        "state_id": state_id,
        "operation_id": operation_id,
        "call_index": e.call_index,
        "call_type": e.call_type,
        "status": e.status,
        "request_hash": e.request_hash,
        "request_ref": e.request_ref,
        "response_hash": e.response_hash,
        "response_ref": e.response_ref,
        "error_json": e.error_json,
        "latency_ms": e.latency_ms,
        "created_at": utc(e.timestamp),
        "started_at": None if e.started_at is None else utc(e.started_at),
        "summary_json": e.summary_json,
    }


@project.register
def _state_call(e: NodeState.CallRecorded, changes: Changes) -> None:
    changes.insert(calls, _call_row(e, str(e.originator_id), None))


@project.register
def _operation_call(e: Operation.CallRecorded, changes: Changes) -> None:
    changes.insert(calls, _call_row(e, None, str(e.originator_id)))


def _parent_table(e: object) -> Table:
    return node_states if isinstance(e, NodeState.Event) else operations


def _context(e: PendingEvent | CompletedEvent | FailedEvent, table: Table) -> Row:
    """A state's context columns, when the event carries one (a later one replaces it)."""
    if table is not node_states or e.context_hash is None:
        return {}
    return {"context_hash": e.context_hash, "context_json": e.context_json}


def _measured(e: CompletedEvent | FailedEvent) -> Row:
    return {} if e.duration_ms is None else {"duration_ms": e.duration_ms}


@project.register(NodeState.StatePending)
@project.register(Operation.OperationPending)
def _pending(e: NodeState.StatePending | Operation.OperationPending, changes: Changes) -> None:
    table = _parent_table(e)
    changes.patch(table, str(e.originator_id), {"status": PENDING, **_context(e, table)})


@project.register(NodeState.StateCompleted)
@project.register(Operation.OperationCompleted)
def _completed(e: CompletedEvent, changes: Changes) -> None:
    table = _parent_table(e)
    changes.patch(
        table,
        str(e.originator_id),
        {
            "status": COMPLETED,
            "output_hash": e.output_hash,
            "completed_at": utc(e.timestamp),
            **_measured(e),
            **_context(e, table),
        },
    )


@project.register(NodeState.StateFailed)
@project.register(Operation.OperationFailed)
def _failed(e: FailedEvent, changes: Changes) -> None:
    table = _parent_table(e)
    changes.patch(
        table,
        str(e.originator_id),
        {
            "status": FAILED,
            "error_json": e.error_json,
            "completed_at": utc(e.timestamp),
            **_measured(e),
            **_context(e, table),
        },
    )


@project.register
def _batch_created(e: Batch.BatchCreated, changes: Changes) -> None:
    changes.insert(batches, _batch_row(e, retry_of_batch_id=None))


@project.register
def _batch_retried(e: Batch.BatchRetried, changes: Changes) -> None:
    changes.insert(batches, _batch_row(e, retry_of_batch_id=str(e.retry_of_batch_id)))


def _batch_row(e: Batch.BatchCreated, *, retry_of_batch_id: str | None) -> Row:
    return {
        "batch_id": str(e.originator_id),
        "run_id": str(e.run_id),
        "aggregation_node_id": e.aggregation_node_id,
        "aggregation_state_id": None,
        "attempt": e.attempt,
        "status": DRAFT,
        "error_json": None,
        "created_at": utc(e.timestamp),
        "completed_at": None,
        "retry_of_batch_id": retry_of_batch_id,
        "trigger_reason": None,
    }


@project.register
def _member_added(e: Batch.BatchMemberAdded, changes: Changes) -> None:
    changes.insert(
        batch_members,
        {"batch_id": str(e.originator_id), "token_id": e.token_id, "ordinal": e.ordinal},
    )


@project.register
def _batch_linked(e: Batch.BatchLinked, changes: Changes) -> None:
    changes.patch(
        batches,
        str(e.originator_id),
        {
            "aggregation_state_id": str(e.state_id),
            "status": EXECUTING,
            "trigger_reason": e.trigger_reason,
        },
    )


@project.register
def _batch_completed(e: Batch.BatchCompleted, changes: Changes) -> None:
    changes.patch(
        batches,
        str(e.originator_id),
        {"status": BATCH_COMPLETED, "completed_at": utc(e.timestamp)},
    )


@project.register
def _batch_failed(e: Batch.BatchFailed, changes: Changes) -> None:
    changes.patch(
        batches,
        str(e.originator_id),
        {"status": BATCH_FAILED, "error_json": e.error_json, "completed_at": utc(e.timestamp)},
    )
