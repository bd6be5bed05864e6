"""An event the landscape cannot apply stops catch-up with ProjectionStuck, never silently;
verify names it; skip_event is the recorded way past it, kept by rebuild, listed by verify."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from auditledger.adapters import Ledger
from auditledger.domain.errors import InvalidArgument, ProjectionStuck
from auditledger.domain.node_state import NodeState
from tests.support.forged_events import append, opened

PROJECTABLE = "the events after the position can be projected"
SKIPPED = "no event of the log is skipped by the landscape"
REBUILD = "the live landscape equals a fresh rebuild"


def check(ledger: Ledger, name: str, **options: bool):  # type: ignore[no-untyped-def]
    return next(c for c in ledger.verify(**options).checks if c.name == name)


def rows(ledger: Ledger, table: str) -> int:
    with ledger.stores.landscape_engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


@pytest.fixture
def stuck(ledger: Ledger) -> tuple[Ledger, int]:
    """A run and a state, then a forged state whose step_index no INTEGER column holds,
    then an honest state after it."""
    run_id = ledger.begin_run(config={"p": 1})
    ledger.open_state(run_id=run_id, token_id="t0", node_id="n", step_index=0)
    position = append(ledger, opened(run_id, step_index=2**63))
    ledger.open_state(run_id=run_id, token_id="t1", node_id="n", step_index=1)
    return ledger, position


def test_an_event_no_column_holds_stops_catch_up_with_a_typed_error(
    stuck: tuple[Ledger, int],
) -> None:
    ledger, position = stuck
    for _ in range(2):  # and again: it never passes silently
        with pytest.raises(ProjectionStuck) as raised:
            ledger.catch_up()
        assert raised.value.position == position
        assert raised.value.topic == NodeState.StateOpened.TOPIC
        assert f"position {position}" in str(raised.value) and "--skip" in str(raised.value)
        assert ledger.landscape_position() == position - 1  # everything before it applied
    found = check(ledger, PROJECTABLE)
    assert not found.passed and f"position {position}" in found.examples[0]


def test_a_skip_lets_catch_up_continue_and_is_kept_by_rebuild_and_listed_by_verify(
    stuck: tuple[Ledger, int],
) -> None:
    ledger, position = stuck
    with pytest.raises(ProjectionStuck):
        ledger.catch_up()
    skip = ledger.skip_event(position, reason="forged in a test")
    assert (skip.position, skip.topic) == (position, NodeState.StateOpened.TOPIC)
    assert ledger.catch_up() == 1
    assert ledger.landscape_position() == position + 1
    assert rows(ledger, "node_states") == 2
    report = ledger.verify()
    assert report.passed and report.flagged
    listed = check(ledger, SKIPPED)
    assert listed.flagged and f"position {position}" in listed.examples[0]
    assert "forged in a test" in listed.examples[0]
    assert ledger.rebuild().position == position + 1
    assert rows(ledger, "node_states") == 2
    assert check(ledger, SKIPPED).examples == listed.examples
    assert ledger.app.recorder.max_notification_id() == position + 1  # still in the log


def test_only_the_event_that_stops_catch_up_can_be_skipped(stuck: tuple[Ledger, int]) -> None:
    ledger, position = stuck
    with pytest.raises(ProjectionStuck):
        ledger.catch_up()
    for wrong in (position - 1, position + 1, 0, -3):
        with pytest.raises(InvalidArgument):
            ledger.skip_event(wrong, reason="not this one")
    with pytest.raises(InvalidArgument):
        ledger.skip_event(position, reason="")
    ledger.skip_event(position, reason="forged")
    with pytest.raises(InvalidArgument, match="already skipped"):
        ledger.skip_event(position, reason="twice")
    assert rows(ledger, "projection_skips") == 1


def test_a_forged_event_missing_a_field_is_stuck_not_an_attribute_error(ledger: Ledger) -> None:
    run_id = ledger.begin_run()
    position = append(ledger, opened(run_id), drop="node_id")
    with pytest.raises(ProjectionStuck) as raised:
        ledger.catch_up()
    assert raised.value.position == position and "AttributeError" in raised.value.reason
    assert not check(ledger, PROJECTABLE).passed


def test_an_unprojectable_event_already_behind_the_position_is_a_rebuild_finding(
    ledger: Ledger,
) -> None:
    run_id = ledger.begin_run()
    position = append(ledger, opened(run_id), drop="node_id")
    with pytest.raises(ProjectionStuck):
        ledger.catch_up()
    ledger.skip_event(position, reason="to get past it")
    ledger.catch_up()
    with ledger.stores.landscape_engine.begin() as conn:  # as if the skip had never been
        conn.execute(text("DELETE FROM projection_skips"))
    found = check(ledger, REBUILD)
    assert not found.passed and f"position {position}" in found.examples[0]


@pytest.mark.parametrize("chunk_size", [0, -1, 2.5, True])
def test_a_chunk_size_below_one_is_invalid(ledger: Ledger, chunk_size: object) -> None:
    ledger.begin_run()
    with pytest.raises(InvalidArgument, match="chunk_size"):
        ledger.catch_up(chunk_size)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="chunk_size"):
        ledger.rebuild(chunk_size=chunk_size)  # type: ignore[arg-type]
    assert ledger.landscape_position() == 0


@pytest.mark.parametrize(
    "until",
    [-5, datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))],
    ids=["negative", "before year 1 in UTC"],
)
def test_a_rebuild_until_nowhere_is_invalid_and_keeps_the_landscape(
    ledger: Ledger, until: object
) -> None:
    run_id = ledger.begin_run()
    ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    ledger.catch_up()
    with pytest.raises(InvalidArgument, match="until"):
        ledger.rebuild(until)  # type: ignore[arg-type]
    assert rows(ledger, "node_states") == 1
    assert ledger.landscape_position() == 2
