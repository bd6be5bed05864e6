"""NodeState: open -> pending, open/pending -> completed/failed, terminal is final; dense calls."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from auditledger.domain.call_parent import CallFacts, generated_call_id
from auditledger.domain.errors import (
    CallIdConflict,
    InvalidArgument,
    InvalidTransition,
    ParentClosed,
)
from auditledger.domain.node_state import NodeState, state_id_for

H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64
STATUSES = ["open", "pending", "completed", "failed"]
LEGAL = {("open", "pending"), ("open", "completed"), ("open", "failed")}
LEGAL |= {("pending", "completed"), ("pending", "failed")}
MOVES: dict[str, Callable[[NodeState], None]] = {
    "pending": lambda s: s.mark_pending("polling"),
    "completed": lambda s: s.complete(H3),
    "failed": lambda s: s.fail('{"type":"Boom"}'),
}
PATHS = {"open": [], "pending": ["pending"], "completed": ["completed"], "failed": ["failed"]}


def opened(token: str = "tok", node: str = "classify", attempt: int = 0) -> NodeState:
    state = NodeState.open(
        run_id=uuid4(), token_id=token, node_id=node, step_index=0, attempt=attempt, input_hash=H1
    )
    state.collect_events()
    return state


def in_status(status: str) -> NodeState:
    state = opened()
    for move in PATHS[status]:
        MOVES[move](state)
    state.collect_events()
    return state


def call(request_hash: str = H1, call_id: str | None = None, **more: object) -> CallFacts:
    return CallFacts(
        call_type="llm", status="success", request_hash=request_hash, call_id=call_id, **more
    )  # type: ignore[arg-type]


def replay(events: list) -> NodeState:  # type: ignore[type-arg]
    copy = None
    for event in events:
        copy = event.mutate(copy)
    assert isinstance(copy, NodeState)
    return copy


def test_a_state_id_is_derived_from_token_node_and_attempt() -> None:
    state = NodeState.open(
        run_id=uuid4(), token_id="t", node_id="n", step_index=3, attempt=2, input_hash=None
    )
    assert state.id == state_id_for("t", "n", 2)
    assert state.id != state_id_for("t", "n", 3)
    assert (state.status, state.call_count, state.step_index, state.attempt) == ("open", 0, 3, 2)


def test_state_ids_cannot_collide_by_moving_a_separator_between_token_and_node() -> None:
    assert state_id_for("a/b", "c", 0) != state_id_for("a", "b/c", 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("token_id", ""),
        ("token_id", 7),
        ("node_id", "bad\x00node"),
        ("node_id", None),
        ("step_index", -1),
        ("step_index", True),
        ("attempt", "0"),
        ("input_hash", "nothex"),
    ],
)
def test_opening_a_state_refuses_malformed_fields_by_name(field: str, value: object) -> None:
    fields: dict[str, object] = dict(
        run_id=uuid4(), token_id="t", node_id="n", step_index=0, attempt=0, input_hash=None
    )
    fields[field] = value
    with pytest.raises(InvalidArgument, match=field):
        NodeState.open(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("source", STATUSES)
@pytest.mark.parametrize("target", ["pending", "completed", "failed"])
def test_every_transition_is_allowed_exactly_when_the_lifecycle_says_so(
    source: str, target: str
) -> None:
    state = in_status(source)
    if (source, target) in LEGAL:
        MOVES[target](state)
        assert state.status == target
        assert len(state.collect_events()) == 1
        return
    with pytest.raises(InvalidTransition) as raised:
        MOVES[target](state)
    assert str(state.id) in str(raised.value)
    assert f"is {source}: it cannot become {target}" in str(raised.value)
    assert state.pending_events == []
    assert state.status == source


def test_completing_keeps_the_output_hash_and_failing_keeps_the_error() -> None:
    done, broken = opened("a"), opened("b")
    done.complete(H3)
    broken.fail('{"type":"Timeout"}')
    assert (done.status, done.output_hash) == ("completed", H3)
    assert (broken.status, broken.error_json) == ("failed", '{"type":"Timeout"}')


def test_completing_refuses_an_output_hash_that_is_not_a_sha256() -> None:
    state = opened()
    with pytest.raises(InvalidArgument, match="output_hash"):
        state.complete("xyz")
    assert state.pending_events == []


@pytest.mark.parametrize("error", ["", None, 5])
def test_failing_requires_an_error_text(error: object) -> None:
    state = opened()
    with pytest.raises(InvalidArgument, match="error"):
        state.fail(error)  # type: ignore[arg-type]
    assert (state.status, state.pending_events) == ("open", [])


def test_call_indices_are_dense_from_zero() -> None:
    state = opened()
    assert [state.record_call(call(h)) for h in (H1, H2, H3, H1)] == [0, 1, 2, 3]
    events = state.collect_events()
    assert [e.call_index for e in events] == [0, 1, 2, 3]
    assert state.call_count == 4


def test_a_recorded_call_carries_its_facts_and_a_generated_call_id() -> None:
    state = opened()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    state.record_call(
        CallFacts(
            call_type="http",
            status="error",
            request_hash=H1,
            response_hash=H2,
            error_json='{"type":"Boom"}',
            latency_ms=12.5,
            started_at=when,
            summary_json='{"n":1}',
        )
    )
    (event,) = state.collect_events()
    assert (event.call_type, event.status, event.request_hash, event.request_ref) == (
        "http",
        "error",
        H1,
        H1,
    )
    assert (event.response_hash, event.response_ref, event.error_json) == (
        H2,
        H2,
        '{"type":"Boom"}',
    )
    assert (event.latency_ms, event.started_at, event.summary_json) == (12.5, when, '{"n":1}')
    assert event.call_id == generated_call_id(state.id, 0)


def test_a_generated_call_id_is_the_name_based_uuid5_of_parent_and_index() -> None:
    # call ids recorded by earlier versions were str(uuid5(...)): the same text, always
    from uuid import uuid5

    from auditledger.domain.call_parent import CALL_ID_NAMESPACE

    state = opened()
    for index in (0, 1, 7, 12_345):
        expected = str(uuid5(CALL_ID_NAMESPACE, f"{state.id}/{index}"))
        assert generated_call_id(state.id, index) == expected


@pytest.mark.parametrize("status", ["open", "pending"])
def test_an_open_or_pending_state_accepts_calls(status: str) -> None:
    state = in_status(status)
    assert state.record_call(call()) == 0
    assert state.status == status


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_a_terminal_state_refuses_calls_and_names_the_rule(status: str) -> None:
    state = in_status(status)
    with pytest.raises(ParentClosed) as raised:
        state.record_call(call())
    assert str(state.id) in str(raised.value)
    assert "calls attach only to an open or pending parent" in str(raised.value)
    assert state.pending_events == []
    assert state.call_count == 0


def test_retrying_a_call_id_returns_its_index_and_records_nothing_new() -> None:
    state = opened()
    assert state.record_call(call(H1, "req-1")) == 0
    assert state.record_call(call(H2)) == 1
    state.collect_events()
    assert state.record_call(call(H1, "req-1")) == 0
    assert state.pending_events == []
    assert state.call_count == 2


def test_retrying_a_call_id_still_answers_after_the_state_completed() -> None:
    state = opened()
    state.record_call(call(H1, "req-1"))
    state.complete(None)
    state.collect_events()
    assert state.record_call(call(H1, "req-1")) == 0
    assert state.pending_events == []


def test_the_same_call_id_with_another_request_is_a_conflict() -> None:
    state = opened()
    state.record_call(call(H1, "req-1"))
    state.collect_events()
    with pytest.raises(CallIdConflict) as raised:
        state.record_call(call(H2, "req-1"))
    assert "req-1" in str(raised.value)
    assert str(state.id) in str(raised.value)
    assert state.pending_events == []
    assert state.call_count == 1


@pytest.mark.parametrize(
    ("facts", "field"),
    [
        (CallFacts(call_type="", status="success", request_hash=H1), "call_type"),
        (CallFacts(call_type="llm", status="ok", request_hash=H1), "status"),
        (CallFacts(call_type="llm", status="success", request_hash="abc"), "request_hash"),
        (
            CallFacts(call_type="llm", status="success", request_hash=H1, response_hash="x"),
            "response_hash",
        ),
        (
            CallFacts(call_type="llm", status="success", request_hash=H1, latency_ms=-1.0),
            "latency_ms",
        ),
        (
            CallFacts(call_type="llm", status="success", request_hash=H1, latency_ms=float("nan")),
            "latency_ms",
        ),
        (CallFacts(call_type="llm", status="error", request_hash=H1), "error"),
        (CallFacts(call_type="llm", status="success", request_hash=H1, call_id=""), "call_id"),
        (
            CallFacts(call_type="llm", status="success", request_hash=H1, started_at="yesterday"),  # type: ignore[arg-type]
            "started_at",
        ),
    ],
)
def test_a_malformed_call_is_refused_by_field_and_records_nothing(
    facts: CallFacts, field: str
) -> None:
    state = opened()
    with pytest.raises(InvalidArgument, match=field):
        state.record_call(facts)
    assert (state.pending_events, state.call_count) == ([], 0)


def test_a_pending_reason_must_be_text_when_given() -> None:
    state = opened()
    with pytest.raises(InvalidArgument, match="reason"):
        state.mark_pending(42)  # type: ignore[arg-type]
    assert (state.status, state.pending_events) == ("open", [])


def test_replaying_a_states_events_reconstructs_an_equal_state() -> None:
    state = NodeState.open(
        run_id=uuid4(), token_id="t", node_id="n", step_index=1, attempt=0, input_hash=H1
    )
    state.record_call(call(H1, "k"))
    state.mark_pending("batch submitted")
    state.record_call(call(H2))
    state.complete(H3)
    assert replay(state.collect_events()) == state
