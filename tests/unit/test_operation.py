"""Operation: source/sink I/O of a run; the same lifecycle and call rules as a node state."""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

import pytest

from auditledger.domain.call_parent import CallFacts
from auditledger.domain.errors import (
    CallIdConflict,
    InvalidArgument,
    InvalidTransition,
    ParentClosed,
)
from auditledger.domain.operation import Operation

H1, H2 = "1" * 64, "2" * 64
STATUSES = ["open", "pending", "completed", "failed"]
LEGAL = {("open", "pending"), ("open", "completed"), ("open", "failed")}
LEGAL |= {("pending", "completed"), ("pending", "failed")}
MOVES: dict[str, Callable[[Operation], None]] = {
    "pending": lambda o: o.mark_pending(None),
    "completed": lambda o: o.complete(H2),
    "failed": lambda o: o.fail('{"type":"Disk full"}'),
}
PATHS = {"open": [], "pending": ["pending"], "completed": ["completed"], "failed": ["failed"]}


def started() -> Operation:
    operation = Operation.start(
        operation_id=uuid4(),
        run_id=uuid4(),
        node_id="source",
        operation_type="source_load",
        input_hash=None,
    )
    operation.collect_events()
    return operation


def in_status(status: str) -> Operation:
    operation = started()
    for move in PATHS[status]:
        MOVES[move](operation)
    operation.collect_events()
    return operation


def call(request_hash: str = H1, call_id: str | None = None) -> CallFacts:
    return CallFacts(call_type="sql", status="success", request_hash=request_hash, call_id=call_id)


def test_a_started_operation_is_open_with_no_calls() -> None:
    operation_id, run_id = uuid4(), uuid4()
    operation = Operation.start(
        operation_id=operation_id,
        run_id=run_id,
        node_id="sink",
        operation_type="sink_write",
        input_hash=H1,
    )
    assert (operation.id, operation.run_id, operation.node_id) == (operation_id, run_id, "sink")
    assert (operation.operation_type, operation.input_hash) == ("sink_write", H1)
    assert (operation.status, operation.call_count) == ("open", 0)
    assert [type(e).__name__ for e in operation.pending_events] == ["OperationStarted"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("node_id", ""), ("operation_type", "x" * 65), ("operation_type", None), ("input_hash", "z")],
)
def test_starting_an_operation_refuses_malformed_fields_by_name(field: str, value: object) -> None:
    fields: dict[str, object] = dict(
        operation_id=uuid4(), run_id=uuid4(), node_id="n", operation_type="t", input_hash=None
    )
    fields[field] = value
    with pytest.raises(InvalidArgument, match=field):
        Operation.start(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("source", STATUSES)
@pytest.mark.parametrize("target", ["pending", "completed", "failed"])
def test_every_transition_is_allowed_exactly_when_the_lifecycle_says_so(
    source: str, target: str
) -> None:
    operation = in_status(source)
    if (source, target) in LEGAL:
        MOVES[target](operation)
        assert operation.status == target
        assert len(operation.collect_events()) == 1
        return
    with pytest.raises(InvalidTransition) as raised:
        MOVES[target](operation)
    assert str(operation.id) in str(raised.value)
    assert f"operation {operation.id} is {source}: it cannot become {target}" in str(raised.value)
    assert operation.pending_events == []


@pytest.mark.parametrize("status", ["open", "pending"])
def test_an_open_or_pending_operation_records_dense_calls(status: str) -> None:
    operation = in_status(status)
    assert [operation.record_call(call(h)) for h in (H1, H2, H1)] == [0, 1, 2]


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_a_terminal_operation_refuses_calls(status: str) -> None:
    operation = in_status(status)
    with pytest.raises(ParentClosed, match=str(operation.id)):
        operation.record_call(call())
    assert operation.pending_events == []


def test_a_call_id_on_an_operation_is_idempotent_and_refuses_another_request() -> None:
    operation = started()
    assert operation.record_call(call(H1, "k")) == 0
    operation.collect_events()
    assert operation.record_call(call(H1, "k")) == 0
    with pytest.raises(CallIdConflict, match="'k'"):
        operation.record_call(call(H2, "k"))
    assert operation.pending_events == []


def test_replaying_an_operations_events_reconstructs_an_equal_operation() -> None:
    operation = Operation.start(
        operation_id=uuid4(),
        run_id=uuid4(),
        node_id="source",
        operation_type="source_load",
        input_hash=H1,
    )
    operation.record_call(call())
    operation.mark_pending("waiting on the sink")
    operation.record_call(call(H2, "k"))
    operation.fail('{"type":"Disk full"}')
    copy = None
    for event in operation.collect_events():
        copy = event.mutate(copy)
    assert copy == operation
