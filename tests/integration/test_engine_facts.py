"""What a pipeline engine tells the ledger beyond the bare lifecycle (issue 12, part A):
run-scoped state ids, why a batch ran, the context a state ran in, the durations the engine
measured, and that a run completes only when it is settled. On every backend."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select

from auditledger.adapters import Ledger
from auditledger.domain.errors import (
    DuplicateAttempt,
    InvalidArgument,
    NotCanonical,
    RunNotSettled,
)
from auditledger.domain.node_state import state_id_for
from auditledger.projections.tables import batches, node_states, operations


def position(ledger: Ledger) -> int:
    return int(ledger.app.recorder.max_notification_id() or 0)


def refused(ledger: Ledger, error: type[Exception], command: Any) -> Any:
    before = position(ledger)
    with pytest.raises(error) as raised:
        command()
    assert position(ledger) == before
    return raised.value


def row(ledger: Ledger, table: Any, key: str, value: str) -> Any:
    ledger.catch_up()
    with ledger.stores.landscape_engine.connect() as conn:
        return conn.execute(select(table).where(table.c[key] == value)).one()


# 1. Node-state identity scoped to the run


def test_a_second_run_reuses_the_token_ids_of_a_completed_first_run(ledger: Ledger) -> None:
    ids = []
    for _ in range(2):
        run_id = ledger.begin_run(config={"pipeline": "rows"})
        state = ledger.open_state(run_id=run_id, token_id="row-0000", node_id="llm", step_index=0)
        assert state == ledger.state_id(run_id=run_id, token_id="row-0000", node_id="llm")
        ledger.complete_state(state, output={"label": "ok"})
        ledger.complete_run(run_id)
        ids.append(state)
    assert ids[0] != ids[1]
    ledger.catch_up()
    with ledger.stores.landscape_engine.connect() as conn:
        rows = conn.execute(select(node_states).where(node_states.c.token_id == "row-0000")).all()
    assert sorted(r.state_id for r in rows) == sorted(ids)
    assert {r.status for r in rows} == {"completed"}


def test_a_duplicate_attempt_names_the_run_and_status_of_the_state_that_exists(
    ledger: Ledger,
) -> None:
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    ledger.complete_state(state)
    error = refused(
        ledger,
        DuplicateAttempt,
        lambda: ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0),
    )
    assert (error.id, error.run_id, error.status) == (state, run_id, "completed")
    assert f"already exists in run {run_id} and is completed" in str(error)
    assert "a retry is attempt 1" in str(error)


def store_legacy_run(ledger: Ledger) -> str:
    """A RunStarted as stored before run-scoped ids: without the state_ids field."""
    from eventsourcing.persistence import StoredEvent

    from auditledger.domain.run import Run

    run = Run.start(run_id=UUID(int=7), config_json="{}", config_hash="0" * 64)
    (started,) = run.collect_events()
    stored = ledger.app.mapper.to_stored_event(started)
    state = ledger.app.mapper.transcoder.decode(stored.state)
    del state["state_ids"]
    ledger.app.recorder.insert_events(
        [
            StoredEvent(
                originator_id=stored.originator_id,
                originator_version=stored.originator_version,
                topic=stored.topic,
                state=ledger.app.mapper.transcoder.encode(state),
            )
        ]
    )
    return str(run.id)


def test_a_run_stored_before_run_scoped_ids_keeps_its_state_ids(ledger: Ledger) -> None:
    from auditledger.domain.run import LEGACY_STATE_IDS, Run

    run_id = store_legacy_run(ledger)
    assert ledger.load(Run, run_id).state_ids == LEGACY_STATE_IDS
    legacy = str(state_id_for("row-0000", "llm", 0))
    state = ledger.open_state(run_id=run_id, token_id="row-0000", node_id="llm", step_index=0)
    assert state == legacy == ledger.state_id(token_id="row-0000", node_id="llm")
    assert state == ledger.state_id(run_id=run_id, token_id="row-0000", node_id="llm")
    ledger.fail_state(state, error={"type": "Boom"})
    ledger.complete_run(run_id, "interrupted")
    ledger.resume_run(run_id)
    refused(
        ledger,
        DuplicateAttempt,
        lambda: ledger.open_state(run_id=run_id, token_id="row-0000", node_id="llm", step_index=0),
    )
    retry = ledger.open_state(
        run_id=run_id, token_id="row-0000", node_id="llm", step_index=0, attempt=1
    )
    assert retry == str(state_id_for("row-0000", "llm", 1))
    assert row(ledger, node_states, "state_id", retry).run_id == run_id


def test_events_stored_before_the_new_fields_decode_with_none(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    batch = ledger.create_batch(run_id, "n")
    ledger.link_batch(batch, state, "timeout")
    ledger.complete_state(state, output={"o": 1}, context={"c": 1}, duration_ms=5)
    new_fields = {"context_json", "context_hash", "duration_ms", "trigger_reason"}
    mapper = ledger.app.mapper
    for aggregate_id in (state, batch):
        last = ledger.app.recorder.select_events(UUID(aggregate_id), desc=True, limit=1)[0]
        old = {k: v for k, v in mapper.transcoder.decode(last.state).items() if k not in new_fields}
        decoded = mapper.to_domain_event(
            type(last)(
                originator_id=last.originator_id,
                originator_version=last.originator_version,
                topic=last.topic,
                state=mapper.transcoder.encode(old),
            )
        )
        for name in new_fields:
            assert getattr(decoded, name, None) is None


# 3. Why a batch ran


def test_link_batch_records_why_the_batch_ran(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="b", node_id="agg", step_index=1)
    batch = ledger.create_batch(run_id, "agg")
    ledger.add_batch_member(batch, "t0")
    for bad in ("", "x" * 513, 10):
        refused(ledger, InvalidArgument, lambda bad=bad: ledger.link_batch(batch, state, bad))
    ledger.link_batch(batch, state, trigger_reason="count=10")
    assert row(ledger, batches, "batch_id", batch).trigger_reason == "count=10"
    (shown,) = ledger.explain(state_id=state).runs[0].states[0].batches
    assert shown.trigger_reason == "count=10"
    other = ledger.create_batch(run_id, "agg")
    ledger.link_batch(other, state)
    assert row(ledger, batches, "batch_id", other).trigger_reason is None


# 4. Context beside the output


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def test_the_context_a_state_ran_in_is_kept_beside_its_output(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    plain = ledger.open_state(run_id=run_id, token_id="p", node_id="llm", step_index=0)
    ledger.complete_state(plain, output={"label": "x"})
    state = ledger.open_state(run_id=run_id, token_id="c", node_id="llm", step_index=0)
    context = {"pool_size": 4, "retries": 1, "arrival": ["t2", "t0"]}
    ledger.complete_state(state, output={"label": "x"}, context=context)
    text = canonical(context)
    digest = hashlib.sha256(text.encode()).hexdigest()
    got = row(ledger, node_states, "state_id", state)
    assert (got.context_json, got.context_hash) == (text, digest)
    assert got.output_hash == row(ledger, node_states, "state_id", plain).output_hash
    assert row(ledger, node_states, "state_id", plain).context_json is None
    assert ledger.payload(digest) == text.encode()
    (view,) = ledger.explain(state_id=state).runs[0].states
    assert (view.context_json, view.context_hash) == (text, digest)


def test_pending_and_failed_states_carry_their_context_too(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="t", node_id="llm", step_index=0)
    ledger.mark_state_pending(state, "submitted", context={"batch": "b-1"})
    assert row(ledger, node_states, "state_id", state).context_json == '{"batch":"b-1"}'
    ledger.fail_state(state, error={"type": "Boom"}, context={"retries": 3})
    assert row(ledger, node_states, "state_id", state).context_json == '{"retries":3}'
    other = ledger.open_state(run_id=run_id, token_id="u", node_id="llm", step_index=0)
    ledger.mark_pending(other, context={"polls": 0})
    ledger.complete_state(other)
    assert row(ledger, node_states, "state_id", other).context_json == '{"polls":0}'
    later = ledger.open_state(run_id=run_id, token_id="v", node_id="llm", step_index=0)
    refused(ledger, NotCanonical, lambda: ledger.complete_state(later, context={"x": float("nan")}))


# 5. Durations the engine measured


@pytest.mark.parametrize("chunk_size", [1, 1000])
def test_a_measured_duration_wins_over_the_timestamps(ledger: Ledger, chunk_size: int) -> None:
    run_id = ledger.begin_run(config={})
    measured = ledger.open_state(run_id=run_id, token_id="m", node_id="n", step_index=0)
    derived = ledger.open_state(run_id=run_id, token_id="d", node_id="n", step_index=0)
    failed = ledger.open_state(run_id=run_id, token_id="f", node_id="n", step_index=0)
    op = ledger.begin_operation(run_id=run_id, node_id="src", operation_type="source_load")
    op_failed = ledger.begin_operation(run_id=run_id, node_id="src", operation_type="source_load")
    ledger.catch_up(chunk_size)  # opened rows first: completions then need their start
    ledger.complete_state(measured, duration_ms=1234.5)
    ledger.complete_state(derived)
    ledger.fail_state(failed, error={"e": 1}, duration_ms=0)
    ledger.complete_operation(op, duration_ms=77)
    ledger.fail_operation(op_failed, error={"e": 2}, duration_ms=0.25)
    ledger.catch_up(chunk_size)
    assert row(ledger, node_states, "state_id", measured).duration_ms == 1234.5
    assert 0 <= row(ledger, node_states, "state_id", derived).duration_ms < 60_000
    assert row(ledger, node_states, "state_id", failed).duration_ms == 0
    assert row(ledger, operations, "operation_id", op).duration_ms == 77
    assert row(ledger, operations, "operation_id", op_failed).duration_ms == 0.25


def test_a_measured_duration_in_the_same_chunk_as_the_open_is_kept(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="m", node_id="n", step_index=0)
    ledger.complete_state(state, duration_ms=9.5)
    assert row(ledger, node_states, "state_id", state).duration_ms == 9.5


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "5", True, 10**400])
def test_a_duration_that_is_not_finite_and_non_negative_is_refused(
    ledger: Ledger, bad: Any
) -> None:
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    op = ledger.begin_operation(run_id=run_id, node_id="src", operation_type="source_load")
    for command in (
        lambda: ledger.complete_state(state, duration_ms=bad),
        lambda: ledger.fail_state(state, error={}, duration_ms=bad),
        lambda: ledger.complete_operation(op, duration_ms=bad),
        lambda: ledger.fail_operation(op, error={}, duration_ms=bad),
    ):
        error = refused(ledger, InvalidArgument, command)
        assert error.name == "duration_ms"


# 6. A run completes only when it is settled


def test_a_run_with_open_work_is_refused_completion_naming_what_is_open(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    states = [
        ledger.open_state(run_id=run_id, token_id=f"t{i}", node_id="n", step_index=0)
        for i in range(6)
    ]
    error = refused(ledger, RunNotSettled, lambda: ledger.complete_run(run_id))
    assert (error.id, error.count) == (run_id, 6)
    assert len(error.unsettled_ids) == 5 and set(error.unsettled_ids) <= set(states)
    assert "6 of its states" in str(error)
    for state in states[:5]:
        ledger.complete_state(state)
    ledger.mark_pending(states[5])
    error = refused(ledger, RunNotSettled, lambda: ledger.complete_run(run_id))
    assert error.unsettled_ids == (states[5],)
    ledger.fail_state(states[5], error={})
    op = ledger.begin_operation(run_id=run_id, node_id="sink", operation_type="sink_write")
    assert refused(ledger, RunNotSettled, lambda: ledger.complete_run(run_id)).unsettled_ids == (
        op,
    )
    ledger.complete_operation(op)
    batch = ledger.create_batch(run_id, "n")
    assert refused(ledger, RunNotSettled, lambda: ledger.complete_run(run_id)).unsettled_ids == (
        batch,
    )
    ledger.fail_batch(batch, error={"type": "never ran"})
    ledger.complete_run(run_id)
    assert row(ledger, node_states.metadata.tables["runs"], "run_id", run_id).status == "completed"


@pytest.mark.parametrize("ending", ["failed", "interrupted"])
def test_a_run_with_open_work_may_still_fail_or_be_interrupted(ledger: Ledger, ending: str) -> None:
    run_id = ledger.begin_run(config={})
    ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    ledger.create_batch(run_id, "n")
    ledger.complete_run(run_id, ending)
    assert row(ledger, node_states.metadata.tables["runs"], "run_id", run_id).status == ending


def test_another_runs_open_work_does_not_hold_a_run_back(ledger: Ledger) -> None:
    busy = ledger.begin_run(config={})
    ledger.open_state(run_id=busy, token_id="t", node_id="n", step_index=0)
    done = ledger.begin_run(config={})
    ledger.complete_state(ledger.open_state(run_id=done, token_id="t", node_id="n", step_index=0))
    ledger.complete_run(done)
    runs = node_states.metadata.tables["runs"]
    assert (row(ledger, runs, "run_id", done).status, row(ledger, runs, "run_id", busy).status) == (
        "completed",
        "running",
    )


# A landscape made before these columns


def create_old_landscape(engine: Any) -> None:
    """The landscape tables as an earlier version made them: no context or trigger_reason
    columns, node states unique on (token, node, attempt)."""
    from sqlalchemy import MetaData, Table, UniqueConstraint

    from auditledger.projections.schema import TABLES
    from auditledger.projections.tables import ADDED_COLUMNS

    old = MetaData()
    for table in TABLES:
        added = ADDED_COLUMNS.get(table.name, ())
        columns = [c._copy() for c in table.columns if c.name not in added]
        legacy = (
            [
                UniqueConstraint(
                    "token_id", "node_id", "attempt", name="uq_node_states_token_node_attempt"
                )
            ]
            if table.name == "node_states"
            else []
        )
        Table(table.name, old, *columns, *legacy)
    old.create_all(engine)


def test_an_older_landscape_gains_the_new_columns_when_opened(shared_url: str) -> None:
    with Ledger.open(shared_url) as ledger:
        create_old_landscape(ledger.stores.landscape_engine)
        run_id = ledger.begin_run(config={})
        state = ledger.open_state(run_id=run_id, token_id="row-0000", node_id="n", step_index=0)
        ledger.complete_state(state, context={"pool": 2})
        batch = ledger.create_batch(run_id, "n")
        ledger.fail_batch(batch, error={})
        ledger.complete_run(run_id)
        assert row(ledger, node_states, "state_id", state).context_json == '{"pool":2}'
        assert row(ledger, batches, "batch_id", batch).trigger_reason is None
        second = ledger.begin_run(config={})
        again = ledger.open_state(run_id=second, token_id="row-0000", node_id="n", step_index=0)
        assert row(ledger, node_states, "state_id", again).run_id == second
        assert row(ledger, node_states, "state_id", state).run_id == run_id  # rows kept
        assert ledger.verify().passed
