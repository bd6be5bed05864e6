"""Values no landscape could hold are refused at the command, typed, with nothing written;
the largest values that fit are accepted and projected on every backend."""

# ruff: noqa: B023  (every lambda here is called within the loop iteration that made it)

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from auditledger.adapters import Ledger
from auditledger.domain.errors import InvalidArgument
from auditledger.domain.node_state import NodeState
from auditledger.domain.values import MAX_COUNT, MAX_INLINE_BYTES

LONE = "a\ud800b"
EAST = timezone(timedelta(hours=5))
WEST = timezone(timedelta(hours=-5))


def refused(ledger: Ledger, command: Any, name: str) -> InvalidArgument:
    before = ledger.app.recorder.max_notification_id()
    with pytest.raises(InvalidArgument) as raised:
        command()
    assert raised.value.name == name
    assert ledger.app.recorder.max_notification_id() == before
    return raised.value


@pytest.fixture
def run_and_state(ledger: Ledger) -> tuple[str, str]:
    run_id = ledger.begin_run()
    return run_id, ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)


def test_whole_numbers_beyond_an_integer_column_are_refused(
    ledger: Ledger, run_and_state: tuple[str, str]
) -> None:
    run_id, _ = run_and_state
    for name in ("step_index", "attempt"):
        fields = {"token_id": "big", "node_id": "n", "step_index": 0, name: MAX_COUNT + 1}
        refused(ledger, lambda: ledger.open_state(run_id=run_id, **fields), name)
    refused(ledger, lambda: ledger.create_batch(run_id, "agg", attempt=2**31), "attempt")


def test_the_largest_whole_numbers_are_accepted_and_projected(
    ledger: Ledger, run_and_state: tuple[str, str]
) -> None:
    run_id, _ = run_and_state
    ledger.open_state(
        run_id=run_id, token_id="big", node_id="n", step_index=MAX_COUNT, attempt=MAX_COUNT
    )
    ledger.catch_up()
    steps = {s.step_index for s in ledger.explain(run_id=run_id).runs[0].states}
    assert steps == {0, MAX_COUNT}
    assert ledger.verify().passed


@pytest.mark.parametrize(
    "moment",
    [datetime(1, 1, 1, 0, 0, tzinfo=EAST), datetime(9999, 12, 31, 23, 0, tzinfo=WEST)],
    ids=["before year 1 in UTC", "after year 9999 in UTC"],
)
def test_a_start_time_outside_years_1_to_9999_in_utc_is_refused(
    ledger: Ledger, run_and_state: tuple[str, str], moment: datetime
) -> None:
    _, state = run_and_state
    call = {"call_type": "llm", "request": {"q": 1}, "started_at": moment}
    refused(ledger, lambda: ledger.record_call(state, **call), "started_at")


def test_the_extreme_start_times_that_fit_are_accepted_and_projected(
    ledger: Ledger, run_and_state: tuple[str, str]
) -> None:
    run_id, state = run_and_state
    for at in (datetime(1, 1, 1, 5, 0, tzinfo=EAST), datetime(9999, 12, 31, 18, 0, tzinfo=WEST)):
        ledger.record_call(state, call_type="llm", request={"at": str(at)}, started_at=at)
    ledger.catch_up()
    assert len(ledger.explain(run_id=run_id).runs[0].states[0].calls) == 2
    assert ledger.verify().passed


def test_lone_surrogates_in_names_are_refused_before_anything_is_written(
    ledger: Ledger, run_and_state: tuple[str, str]
) -> None:
    run_id, state = run_and_state
    batch = ledger.create_batch(run_id, "agg")
    for command, name in [
        (
            lambda: ledger.open_state(run_id=run_id, token_id=LONE, node_id="n", step_index=0),
            "token_id",
        ),
        (
            lambda: ledger.open_state(run_id=run_id, token_id="t2", node_id=LONE, step_index=0),
            "node_id",
        ),
        (lambda: ledger.record_call(state, call_type=LONE, request={}), "call_type"),
        (lambda: ledger.record_call(state, call_type="x", request={}, call_id=LONE), "call_id"),
        (lambda: ledger.mark_pending(state, reason=LONE), "reason"),
        (lambda: ledger.add_batch_member(batch, LONE), "token_id"),
    ]:
        refused(ledger, command, name)


def test_a_lone_surrogate_in_a_unit_of_work_is_refused_at_once_and_the_unit_commits(
    ledger: Ledger, run_and_state: tuple[str, str]
) -> None:
    _, state = run_and_state
    with ledger.unit_of_work():
        assert ledger.record_call(state, call_type="llm", request={"q": 1}) == 0
        with pytest.raises(InvalidArgument):
            ledger.record_call(state, call_type=LONE, request={"q": 2})
    assert ledger.load(NodeState, state).call_count == 1
    ledger.catch_up()
    assert ledger.landscape_position() == ledger.app.recorder.max_notification_id()


@pytest.mark.parametrize(
    ("argument", "value"),
    [("latency_ms", 2**1100), ("status", ""), ("status", [])],
)
def test_loose_call_values_are_typed_errors(
    ledger: Ledger, run_and_state: tuple[str, str], argument: str, value: Any
) -> None:
    _, state = run_and_state
    call = {"call_type": "llm", "request": {"q": 1}, argument: value}
    refused(ledger, lambda: ledger.record_call(state, **call), argument)


def test_inline_text_is_capped_and_the_message_cuts_the_value(
    ledger: Ledger, run_and_state: tuple[str, str]
) -> None:
    _, state = run_and_state
    huge = "x" * (MAX_INLINE_BYTES + 79)
    for argument in ("error", "summary"):
        value = {"text": huge} if argument == "summary" else huge
        call = {"call_type": "llm", "request": {"q": 1}, "response": {"a": 1}, argument: value}
        error = refused(ledger, lambda: ledger.record_call(state, **call), argument)
        assert len(str(error)) < 500 and "characters)" in str(error)
