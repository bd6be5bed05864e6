"""The Ledger behaves the same on every backend: memory, SQLite, PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest

from auditledger.adapters import Ledger
from auditledger.domain.errors import DuplicateAttempt, NotCanonical, ParentClosed, UnknownState
from auditledger.domain.node_state import NodeState


def test_the_readme_example_records_dense_calls_and_closes_the_state(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={"pipeline": "triage", "version": 3})
    state_id = ledger.open_state(
        run_id=run_id, token_id="tok-1", node_id="classify", step_index=0, input={"text": "..."}
    )
    first = ledger.record_call(
        state_id,
        call_type="llm",
        request={"model": "m", "messages": []},
        response={"choices": []},
        latency_ms=812.5,
    )
    second = ledger.record_call(
        state_id,
        call_type="http",
        request={"url": "https://x"},
        error={"type": "ConnectTimeout", "message": "timed out"},
    )
    ledger.complete_state(state_id, output={"label": "urgent"})
    ledger.complete_run(run_id, status="completed")

    assert (first, second) == (0, 1)
    state = ledger.load(NodeState, state_id)
    assert state.status == "completed"
    assert state.call_count == 2


def test_a_synthetic_state_id_is_an_unknown_state_and_writes_nothing(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    before = ledger.app.recorder.max_notification_id()
    with pytest.raises(UnknownState) as raised:
        ledger.record_call(f"{state_id}_row0", call_type="llm", request={"q": 1})
    assert f"{state_id}_row0" in str(raised.value)
    assert ledger.app.recorder.max_notification_id() == before


def test_opening_the_same_attempt_twice_is_refused(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    with pytest.raises(DuplicateAttempt):
        ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    retry = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0, attempt=1)
    assert retry != ledger.state_id(run_id=run_id, token_id="t", node_id="n", attempt=0)
    assert retry == ledger.state_id(run_id=run_id, token_id="t", node_id="n", attempt=1)
    assert ledger.load(NodeState, retry).attempt == 1


def test_nan_is_refused_before_anything_is_written(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    with pytest.raises(NotCanonical):
        ledger.record_call(state_id, call_type="llm", request={"temperature": float("nan")})
    assert ledger.record_call(state_id, call_type="llm", request={"temperature": 0.5}) == 0


def test_a_completed_state_takes_no_more_calls(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    ledger.complete_state(state_id)
    with pytest.raises(ParentClosed):
        ledger.record_call(state_id, call_type="llm", request={})


def test_payloads_come_back_byte_for_byte_and_hash_checked(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    ledger.record_call(state_id, call_type="llm", request={"b": 1, "a": "é"}, response={"ok": True})
    state = ledger.load(NodeState, state_id)
    assert state.call_count == 1
    data = ledger.payload(hashlib.sha256(b'{"a":"\xc3\xa9","b":1}').hexdigest())
    assert data == '{"a":"é","b":1}'.encode()
