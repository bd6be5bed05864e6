"""The landscape fold: events -> rows to insert and patches for rows written earlier."""

from __future__ import annotations

from uuid import uuid4

from auditledger.domain.call_key import CallKey
from auditledger.domain.call_parent import CallFacts
from auditledger.domain.node_state import NodeState
from auditledger.projections.landscape import KEYS, Changes, fold
from auditledger.projections.schema import Landscape
from auditledger.projections.tables import LANDSCAPE_TABLES, batch_members, calls, node_states

DIGEST = "b" * 64


def opened_state() -> NodeState:
    return NodeState.open(
        run_id=uuid4(), token_id="t", node_id="n", step_index=0, attempt=0, input_hash=None
    )


def test_a_state_opened_and_completed_in_one_chunk_is_one_insert_with_its_duration() -> None:
    state = opened_state()
    state.record_call(CallFacts(call_type="llm", status="success", request_hash=DIGEST))
    state.complete(DIGEST)
    events = state.collect_events()

    changes = fold(events)

    (row,) = changes.inserts[node_states].values()
    assert row["status"] == "completed" and row["output_hash"] == DIGEST
    opened, completed = events[0].timestamp, events[-1].timestamp
    assert row["duration_ms"] == (completed - opened).total_seconds() * 1000
    assert [c["call_index"] for c in changes.inserts[calls].values()] == [0]
    assert not any(changes.patches.values())


def test_completing_a_state_from_an_earlier_chunk_is_a_patch_that_needs_its_start() -> None:
    state = opened_state()
    state.collect_events()
    state.mark_pending("waiting")
    state.complete(None)

    changes = fold(state.collect_events())

    key = str(state.id)
    assert changes.inserts[node_states] == {}
    assert changes.patches[node_states][key]["status"] == "completed"
    assert changes.needing_start(node_states) == [key]


def test_a_call_key_reservation_projects_nothing() -> None:
    changes = fold(CallKey.reserve("key-1", uuid4()).collect_events())
    assert changes == Changes()
    assert not changes


def test_row_keys_are_the_primary_keys_the_tables_declare() -> None:
    assert list(KEYS) == list(LANDSCAPE_TABLES)
    assert KEYS[node_states] == ("state_id",)
    assert KEYS[batch_members] == ("batch_id", "token_id")
    assert all(KEYS[t] == tuple(c.name for c in t.primary_key) for t in LANDSCAPE_TABLES)


def test_a_landscape_gives_its_own_copy_of_a_table() -> None:
    aside = Landscape.shadow("shadow_x")
    copy = aside[calls]
    assert copy is not calls and copy.name == calls.name and copy.schema == "shadow_x"
    assert Landscape.live()[calls] is calls and Landscape.live()["calls"] is calls
