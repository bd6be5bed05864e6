"""`with ledger.unit_of_work():` commits every command in it at once, or nothing of it.

Runs on memory, SQLite and PostgreSQL. "Another writer" is a second Ledger over the same
stores: its own cache and locks, as another process would have.
"""

from __future__ import annotations

import threading
import time
from uuid import UUID

import pytest

from auditledger.adapters import Ledger
from auditledger.domain.batch import Batch
from auditledger.domain.errors import DuplicateAttempt, UnitConflict, UnitNesting, UnknownState
from auditledger.domain.node_state import NodeState


def log_end(ledger: Ledger) -> int:
    return ledger.app.recorder.max_notification_id() or 0


def indices(ledger: Ledger, state_id: str) -> list[int]:
    return [
        e.call_index
        for e in ledger.app.events.get(UUID(state_id))
        if isinstance(e, NodeState.CallRecorded)
    ]


def test_nothing_is_visible_until_the_unit_ends_then_everything_is(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    before = log_end(ledger)
    with ledger.unit_of_work():
        state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        calls = [ledger.record_call(state_id, call_type="llm", request={"n": n}) for n in range(3)]
        ledger.complete_state(state_id, output={"ok": True})
        assert log_end(ledger) == before
    assert calls == [0, 1, 2]
    assert log_end(ledger) == before + 5
    state = ledger.load(NodeState, state_id)
    assert (state.status, state.call_count) == ("completed", 3)


def test_an_exception_inside_the_unit_writes_nothing_of_it(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    kept = ledger.open_state(run_id=run_id, token_id="kept", node_id="n", step_index=0)
    before = log_end(ledger)
    with pytest.raises(RuntimeError), ledger.unit_of_work():
        ledger.record_call(kept, call_type="llm", request={"lost": 1})
        lost = ledger.open_state(run_id=run_id, token_id="lost", node_id="n", step_index=0)
        raise RuntimeError("the engine crashed")
    assert log_end(ledger) == before
    with pytest.raises(UnknownState):
        ledger.load(NodeState, lost)
    assert ledger.record_call(kept, call_type="llm", request={"after": 1}) == 0
    assert ledger.open_state(run_id=run_id, token_id="lost", node_id="n", step_index=0) == lost


def test_commands_in_a_unit_see_each_other(ledger: Ledger) -> None:
    with ledger.unit_of_work():
        run_id = ledger.begin_run(config={"in": "unit"})
        state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="agg", step_index=0)
        batch_id = ledger.create_batch(run_id, "agg")
        ordinals = [ledger.add_batch_member(batch_id, f"m{i}") for i in range(3)]
        ledger.link_batch(batch_id, state_id)
        first = ledger.record_call(state_id, call_type="llm", request={"q": 1}, call_id="k-1")
        again = ledger.record_call(state_id, call_type="llm", request={"q": 1}, call_id="k-1")
        ledger.complete_batch(batch_id)
    assert ordinals == [0, 1, 2]
    assert (first, again) == (0, 0)
    batch = ledger.load(Batch, batch_id)
    assert (batch.status, batch.state_id, batch.members) == (
        "completed",
        UUID(state_id),
        {"m0": 0, "m1": 1, "m2": 2},
    )
    assert indices(ledger, state_id) == [0]


def test_events_of_a_unit_are_logged_in_command_order(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    with ledger.unit_of_work():
        batch_id = ledger.create_batch(run_id, "agg")
        state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="agg", step_index=0)
        ledger.link_batch(batch_id, state_id)
    notes = ledger.app.recorder.select_notifications(start=1, limit=100)
    order = [(str(n.originator_id), n.originator_version) for n in notes][-3:]
    assert order == [(batch_id, 1), (state_id, 1), (batch_id, 2)]


def test_a_duplicate_attempt_in_a_unit_fails_the_unit_and_writes_nothing(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    before = log_end(ledger)
    with pytest.raises(DuplicateAttempt), ledger.unit_of_work():
        ledger.open_state(run_id=run_id, token_id="other", node_id="n", step_index=0)
        ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    assert log_end(ledger) == before


def test_opening_one_attempt_twice_in_a_unit_is_refused_at_once(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    with ledger.unit_of_work():
        state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        with pytest.raises(DuplicateAttempt):
            ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        ledger.record_call(state_id, call_type="llm", request={})
    assert indices(ledger, state_id) == [0]


def test_a_unit_that_lost_a_race_raises_unit_conflict_and_can_be_run_again(
    ledger: Ledger,
) -> None:
    other = Ledger(ledger.stores)
    run_id = ledger.begin_run(config={})
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    before = log_end(ledger)
    with pytest.raises(UnitConflict) as raised, ledger.unit_of_work():
        promised = ledger.record_call(state_id, call_type="llm", request={"from": "unit"})
        side = ledger.open_state(run_id=run_id, token_id="side", node_id="n", step_index=0)
        assert other.record_call(state_id, call_type="llm", request={"from": "other"}) == 0
    assert promised == 0
    assert raised.value.retryable
    assert state_id in raised.value.ids
    assert log_end(ledger) == before + 1
    with pytest.raises(UnknownState):
        ledger.load(NodeState, side)
    with ledger.unit_of_work():
        again = ledger.record_call(state_id, call_type="llm", request={"from": "unit"})
        ledger.open_state(run_id=run_id, token_id="side", node_id="n", step_index=0)
    assert again == 1
    assert indices(ledger, state_id) == [0, 1]


def test_units_do_not_nest(ledger: Ledger) -> None:
    with ledger.unit_of_work(), pytest.raises(UnitNesting), ledger.unit_of_work():
        pass


def test_a_thread_waits_for_the_unit_that_holds_its_state(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    got: list[int] = []
    waiter = threading.Thread(
        target=lambda: got.append(ledger.record_call(state_id, call_type="llm", request={"b": 1}))
    )
    with ledger.unit_of_work():
        mine = [ledger.record_call(state_id, call_type="llm", request={"a": n}) for n in range(2)]
        waiter.start()
        time.sleep(0.2)  # the other thread is now blocked on the unit's lock, not racing it
        assert got == []
    waiter.join()
    assert (mine, got) == ([0, 1], [2])
    assert indices(ledger, state_id) == [0, 1, 2]


def test_a_younger_unit_meeting_an_older_one_fails_at_once(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    older_has_it = threading.Event()
    younger_done = threading.Event()
    outcome: list[str] = []

    def older() -> None:
        with ledger.unit_of_work():
            ledger.record_call(state_id, call_type="llm", request={"older": 1})
            older_has_it.set()
            younger_done.wait(10)

    thread = threading.Thread(target=older)
    thread.start()
    older_has_it.wait(10)
    try:
        with ledger.unit_of_work():
            ledger.record_call(state_id, call_type="llm", request={"younger": 1})
    except UnitConflict:
        outcome.append("conflict")
    finally:
        younger_done.set()
        thread.join()
    assert outcome == ["conflict"]
    assert indices(ledger, state_id) == [0]


def test_an_audited_client_works_for_a_state_opened_in_the_same_unit(ledger: Ledger) -> None:
    import httpx

    run_id = ledger.begin_run(config={})
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    with ledger.unit_of_work():
        state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        with ledger.http_client(state_id, transport=transport) as client:
            assert client.get("https://example.test/x").json() == {"ok": True}

    assert ledger.load(NodeState, state_id).call_count == 1
