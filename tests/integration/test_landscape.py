"""The Ledger's landscape: catch-up, explain, time travel, a landscape in another database."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from auditledger.adapters import Ledger
from auditledger.domain.errors import StoreError, UnknownRun, UnknownState, UnknownToken
from tests.support.landscape_model import dump, log_events, record_scenario, reference_fold


def test_catch_up_applies_what_is_new_and_returns_how_many(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={"a": 1})
    assert ledger.catch_up() == 1
    assert ledger.catch_up() == 0
    ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    ledger.complete_run(run_id, "interrupted")
    assert ledger.catch_up() == 2


def test_explain_sees_everything_recorded_before_it(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="tok", node_id="llm", step_index=0)
    ledger.record_call(state, call_type="llm", request={"q": 1}, response={"a": 2}, latency_ms=5)
    ledger.record_call(state, call_type="llm", request={"q": 2}, error={"type": "Timeout"})
    ledger.complete_state(state, output={"ok": True})

    found = ledger.explain(state_id=state)

    (run,) = found.runs
    (view,) = run.states
    assert (run.run_id, view.state_id, view.status) == (run_id, state, "completed")
    assert [(c.call_index, c.status) for c in view.calls] == [(0, "success"), (1, "error")]
    assert view.calls[0].latency_ms == 5
    assert view.calls[0].response_payload == "present"
    assert view.duration_ms is not None and view.duration_ms >= 0


def test_explain_shows_a_purged_payload_as_purged(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="tok", node_id="llm", step_index=0)
    ledger.record_call(state, call_type="llm", request={"q": 1}, response={"a": 2})
    call = ledger.explain(state_id=state).runs[0].states[0].calls[0]
    ledger.payloads.purge([call.request_hash])
    call = ledger.explain(state_id=state).runs[0].states[0].calls[0]
    assert (call.request_payload, call.response_payload) == ("purged", "present")


def test_explain_a_token_shows_its_states_and_the_batches_it_joined(ledger: Ledger) -> None:
    scenario = record_scenario(ledger)
    token = f"{scenario.run_id[:8]}/tok-1"
    (run,) = ledger.explain(token_id=token).runs
    assert run.run_id == scenario.run_id
    assert [(s.attempt, s.status) for s in run.states] == [(0, "failed"), (1, "completed")]
    assert [c.status for c in run.states[0].calls] == ["error"]
    assert [m.ordinal for m in run.batches[0].members] == [0, 1, 2]
    whole = ledger.explain(run_id=scenario.run_id).runs[0]
    assert len(whole.states) == 6 and len(whole.operations) == 1
    (summarise,) = [s for s in whole.states if s.node_id == "summarise"]
    assert [b.batch_id for b in summarise.batches] == [scenario.batch_id]
    assert whole.batches == []


def test_explain_of_an_unknown_id_is_a_typed_error(ledger: Ledger) -> None:
    ledger.begin_run(config={})
    with pytest.raises(UnknownRun):
        ledger.explain(run_id="nope")
    with pytest.raises(UnknownState):
        ledger.explain(state_id="nope")
    with pytest.raises(UnknownToken):
        ledger.explain(token_id="nope")


def test_rebuild_until_a_timestamp_shows_the_landscape_as_it_stood(ledger: Ledger) -> None:
    first = ledger.begin_run(config={"run": 1})
    time.sleep(0.01)
    moment = datetime.now(UTC)
    time.sleep(0.01)
    second = ledger.begin_run(config={"run": 2})
    ledger.complete_run(first)

    result = ledger.rebuild(moment.isoformat())

    engine = ledger.stores.landscape_engine
    assert result.events == 1
    assert set(dump(engine)["runs"]) == {(first,)}
    assert dump(engine)["runs"][(first,)]["status"] == "running"
    assert ledger.catch_up() == 2
    assert set(dump(engine)["runs"]) == {(first,), (second,)}


def test_a_rebuild_equals_the_fold_of_the_whole_log(ledger: Ledger) -> None:
    record_scenario(ledger)
    ledger.catch_up()
    before = dump(ledger.stores.landscape_engine)
    ledger.rebuild()
    assert dump(ledger.stores.landscape_engine) == before == reference_fold(log_events(ledger))


def test_the_landscape_can_live_in_another_database(store_url: str, tmp_path: Path) -> None:
    landscape = f"sqlite:///{tmp_path}/auditor.sqlite3"
    with Ledger.open(store_url, landscape=landscape) as ledger:
        demo = record_scenario(ledger)
        assert ledger.catch_up() > 0
        assert ledger.verify().passed
    with (
        Ledger.open(f"sqlite:///{tmp_path}/elsewhere", landscape=landscape) as other,
        other.stores.landscape_engine.connect() as conn,
    ):
        runs = conn.execute(text("SELECT run_id FROM runs")).scalars().all()
    assert runs == [demo.run_id]


def test_a_landscape_of_another_shape_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "odd.sqlite3"
    import sqlite3

    with sqlite3.connect(odd) as conn:
        conn.execute("CREATE TABLE calls (call_id TEXT PRIMARY KEY, whatever TEXT)")
    with Ledger.open("memory://", landscape=f"sqlite:///{odd}") as ledger:
        ledger.begin_run(config={})
        with pytest.raises(StoreError, match="calls lacks columns"):
            ledger.catch_up()
    with sqlite3.connect(odd) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"calls"}


CATCH_UP = """
import sys
from auditledger.adapters import Ledger
with Ledger.open(sys.argv[1]) as ledger:
    total = 0
    while True:
        applied = ledger.catch_up(chunk_size=7)
        total += applied
        if applied == 0:
            break
    print(total)
"""


def test_two_processes_catching_up_at_once_apply_each_event_once(shared_url: str) -> None:
    url = shared_url
    with Ledger.open(url) as ledger:
        for _ in range(3):
            record_scenario(ledger, ending="interrupted")  # "completed" would catch up
        total = len(log_events(ledger))
    workers = [
        subprocess.Popen([sys.executable, "-c", CATCH_UP, url], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    totals = [int(w.communicate(timeout=120)[0]) for w in workers]
    assert sum(totals) == total
    with Ledger.open(url) as ledger:
        assert ledger.verify().passed
