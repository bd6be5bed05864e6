"""An event stored by an older version of its class still projects, through its upcaster."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import register_topic
from sqlalchemy import select

from auditledger.adapters import Ledger
from auditledger.domain.node_state import NodeState
from auditledger.projections.tables import node_states

TOPIC = "auditledger-test:NodeState.StateOpened:v2"


class StateOpenedV2(NodeState.StateOpened):
    """How a second version of StateOpened would look: v1 called the field input_digest."""

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["input_hash"] = state.pop("input_digest")


register_topic(TOPIC, StateOpenedV2)


def test_an_old_version_of_an_event_projects_through_its_upcaster() -> None:
    with Ledger.open("memory://") as ledger:
        run_id = ledger.begin_run(config={})
        state = NodeState.open(
            run_id=UUID(run_id),
            token_id="old-token",
            node_id="classify",
            step_index=0,
            attempt=0,
            input_hash="a" * 64,
        )
        (opened,) = state.collect_events()
        current = ledger.app.mapper.to_stored_event(opened)
        v1_state = ledger.app.mapper.transcoder.decode(current.state)
        v1_state["input_digest"] = v1_state.pop("input_hash")
        ledger.app.recorder.insert_events(
            [
                StoredEvent(
                    originator_id=current.originator_id,
                    originator_version=current.originator_version,
                    topic=TOPIC,
                    state=ledger.app.mapper.transcoder.encode(v1_state),
                )
            ]
        )

        assert ledger.catch_up() == 2
        with ledger.stores.landscape_engine.connect() as conn:
            row = conn.execute(select(node_states)).one()
    assert (row.token_id, row.input_hash, row.status) == ("old-token", "a" * 64, "open")
