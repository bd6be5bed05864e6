"""The aggregates' side of issue 12 part A: run-scoped ids, settlement, context, durations."""

from __future__ import annotations

from uuid import uuid4

import pytest

from auditledger.domain.batch import Batch
from auditledger.domain.call_parent import Context
from auditledger.domain.errors import InvalidArgument, RunNotSettled
from auditledger.domain.node_state import NodeState, state_id_for
from auditledger.domain.run import LEGACY_STATE_IDS, RUN_STATE_IDS, Run, Unsettled

DIGEST = "a" * 64


def new_run(**kwargs: object) -> Run:
    return Run.start(run_id=uuid4(), config_json="{}", config_hash=DIGEST, **kwargs)  # type: ignore[arg-type]


def test_a_new_run_derives_state_ids_from_itself_and_the_two_schemes_differ() -> None:
    run = new_run()
    assert run.state_ids == RUN_STATE_IDS and run.scoped_state_ids
    assert state_id_for("t", "n", 0, run.id) != state_id_for("t", "n", 0)
    assert state_id_for("t", "n", 0, run.id) != state_id_for("t", "n", 0, uuid4())
    state = NodeState.open(
        run_id=run.id,
        token_id="t",
        node_id="n",
        step_index=0,
        attempt=0,
        input_hash=None,
        scoped_id=True,
    )
    assert state.id == state_id_for("t", "n", 0, run.id)
    assert not new_run(state_ids=LEGACY_STATE_IDS).scoped_state_ids
    with pytest.raises(InvalidArgument):
        new_run(state_ids=3)


def test_completing_a_run_with_unsettled_work_is_refused_and_triggers_nothing() -> None:
    run = new_run()
    run.collect_events()
    with pytest.raises(RunNotSettled) as raised:
        run.complete("completed", Unsettled(7, ("a", "b", "c", "d", "e")))
    assert raised.value.count == 7 and "a, b, c, d, e ..." in str(raised.value)
    assert run.pending_events == [] and run.status == "running"
    run.complete("failed", Unsettled(7, ("a",)))
    assert run.status == "failed"
    assert not run.needs_settlement("completed")


def test_a_state_refuses_a_malformed_context_or_duration_before_any_event() -> None:
    state = NodeState.open(
        run_id=uuid4(), token_id="t", node_id="n", step_index=0, attempt=0, input_hash=None
    )
    state.collect_events()
    for bad in (Context("", DIGEST), Context("{}", "nope")):
        with pytest.raises(InvalidArgument):
            state.complete(None, context=bad)
    with pytest.raises(InvalidArgument):
        state.fail("{}", duration_ms=-0.5)
    assert state.pending_events == []
    state.complete(None, context=Context("{}", DIGEST), duration_ms=3)
    (completed,) = state.collect_events()
    assert (completed.context_json, completed.context_hash, completed.duration_ms) == (
        "{}",
        DIGEST,
        3.0,
    )


def test_a_batch_link_keeps_why_it_ran() -> None:
    run_id = uuid4()
    batch = Batch.create(batch_id=uuid4(), run_id=run_id, aggregation_node_id="agg", attempt=0)
    state_id = uuid4()
    with pytest.raises(InvalidArgument):
        batch.link(state_id, run_id=run_id, node_id="agg", state_status="open", trigger_reason="")
    batch.link(
        state_id, run_id=run_id, node_id="agg", state_status="open", trigger_reason="end_of_source"
    )
    assert batch.collect_events()[-1].trigger_reason == "end_of_source"
