"""verify passes on an honest landscape and names each kind of tampering done by raw SQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from auditledger.adapters import Ledger
from auditledger.domain.batch import Batch
from auditledger.domain.node_state import NodeState
from auditledger.projections.verify import ERASED_PAYLOADS
from tests.support.landscape_model import record_scenario

REBUILD = "the live landscape equals a fresh rebuild"
DENSE = "call_index is dense (0, 1, 2, ...) per parent"
OPEN = "no state left open in a completed run"
PAYLOADS = "every payload ref is present (or purged) and hashes to its ref"
POSITION = "the projection position matches the log"
PROJECTABLE = "the events after the position can be projected"
SKIPPED = "no event of the log is skipped by the landscape"
LINKS = "every batch was linked before its state ended"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def demo_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/ledger"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    with Ledger.open(url) as ledger:
        record_scenario(ledger)
        ledger.catch_up()
        yield ledger


def failed(ledger: Ledger) -> set[str]:
    return {c.name for c in ledger.verify().checks if not c.passed}


def landscape_sql(ledger: Ledger, sql: str) -> None:
    with ledger.stores.landscape_engine.begin() as conn:
        conn.execute(text(sql))


def test_an_honest_landscape_passes_every_check(demo_ledger: Ledger) -> None:
    report = demo_ledger.verify()
    assert report.passed and not report.flagged
    assert len(report.checks) == 11
    nothing_pending = {PROJECTABLE, SKIPPED, ERASED_PAYLOADS}  # nothing to check: none of it
    assert all(c.checked > 0 for c in report.checks if c.name not in nothing_pending)


@pytest.mark.parametrize(
    ("tampering", "found"),
    [
        pytest.param(
            "DELETE FROM calls WHERE call_index = 0 AND state_id IN "
            "(SELECT state_id FROM calls WHERE call_index = 1)",
            {REBUILD, DENSE},
            id="a deleted call row",
        ),
        pytest.param(
            "UPDATE node_states SET status = 'open', completed_at = NULL, duration_ms = NULL "
            "WHERE state_id = "
            "(SELECT MIN(state_id) FROM node_states WHERE status = 'completed')",
            {REBUILD, OPEN},
            id="a state forced back to open",
        ),
    ],
)
def test_raw_sql_tampering_of_the_landscape_is_found(
    demo_ledger: Ledger, tampering: str, found: set[str]
) -> None:
    landscape_sql(demo_ledger, tampering)
    assert failed(demo_ledger) == found


def test_a_flipped_payload_byte_is_found(demo_ledger: Ledger) -> None:
    with demo_ledger.stores.landscape_engine.connect() as conn:
        ref = conn.execute(text("SELECT request_ref FROM calls LIMIT 1")).scalar_one()
    engine = demo_ledger.payloads.engine
    with engine.begin() as conn:
        data = conn.execute(text("SELECT data FROM payloads WHERE hash = :h"), {"h": ref})
        flipped = bytearray(data.scalar_one())
        flipped[0] ^= 0x01
        conn.execute(
            text("UPDATE payloads SET data = :d WHERE hash = :h"), {"d": bytes(flipped), "h": ref}
        )
    report = demo_ledger.verify()
    check = next(c for c in report.checks if c.name == PAYLOADS)
    assert not check.passed
    assert ref in check.examples[0]
    assert {c.name for c in report.checks if not c.passed} == {PAYLOADS}


def test_a_purged_payload_is_not_a_failure(demo_ledger: Ledger) -> None:
    with demo_ledger.stores.landscape_engine.connect() as conn:
        ref = conn.execute(text("SELECT request_ref FROM calls LIMIT 1")).scalar_one()
    assert demo_ledger.payloads.purge([ref]) == 1
    assert demo_ledger.verify().passed


def test_a_landscape_behind_the_log_is_flagged_not_failed(demo_ledger: Ledger) -> None:
    # Five events recorded after the catch-up (rewinding the position instead would re-apply
    # old events over newer rows, e.g. a pending over a completed state: the CHECKs refuse it)
    run_id = demo_ledger.begin_run(config={"later": True})
    state = demo_ledger.open_state(run_id=run_id, token_id="late", node_id="n", step_index=0)
    demo_ledger.record_call(state, call_type="llm", request={"late": 1}, response={})
    demo_ledger.complete_state(state)
    demo_ledger.complete_run(run_id, "interrupted")  # "completed" would catch up first
    report = demo_ledger.verify(diff=False)
    position = next(c for c in report.checks if c.name == POSITION)
    assert position.passed and position.flagged
    assert "behind the log's last" in position.examples[0] and "by 5" in position.examples[0]
    assert report.passed and report.flagged
    projectable = next(c for c in report.checks if c.name == PROJECTABLE)
    assert projectable.passed and projectable.checked == 5


def test_a_position_ahead_of_the_log_is_found(demo_ledger: Ledger) -> None:
    landscape_sql(demo_ledger, "UPDATE projection_positions SET position = position + 5")
    report = demo_ledger.verify()
    position = next(c for c in report.checks if c.name == POSITION)
    assert not position.passed
    assert "ahead of the log" in position.examples[0]
    assert not report.passed


def test_a_batch_linked_after_its_state_ended_is_found(demo_ledger: Ledger) -> None:
    run_id = demo_ledger.begin_run()
    state_id = demo_ledger.open_state(run_id=run_id, token_id="late", node_id="agg", step_index=0)
    batch_id = demo_ledger.create_batch(run_id, "agg")
    read_while_open = demo_ledger.load(NodeState, state_id)
    demo_ledger.complete_state(state_id)
    batch = demo_ledger.load(Batch, batch_id)
    batch.link(
        read_while_open.id,
        run_id=read_while_open.run_id,
        node_id=read_while_open.node_id,
        state_status=read_while_open.status,
    )
    demo_ledger.app.save(batch)  # what a link racing the completion used to commit
    demo_ledger.catch_up()
    report = demo_ledger.verify()
    assert {c.name for c in report.checks if not c.passed} == {LINKS}
    links = next(c for c in report.checks if c.name == LINKS)
    assert f"batch {batch_id} was linked to state {state_id}" in links.examples[0]
