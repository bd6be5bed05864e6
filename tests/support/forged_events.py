"""Events written below the domain, through the app's own mapper and recorder: what the
domain refuses (a value no column holds, a missing field), as a forger or an old bug could."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import StoredEvent

from auditledger.adapters import Ledger
from auditledger.domain.node_state import NodeState


def opened(run_id: str, **changes: Any) -> NodeState.StateOpened:
    fields: dict[str, Any] = {
        "originator_id": uuid4(),
        "originator_version": 1,
        "originator_topic": NodeState.TOPIC,
        "timestamp": datetime.now(UTC),
        "run_id": UUID(run_id),
        "token_id": "forged",
        "node_id": "n",
        "step_index": 0,
        "attempt": 0,
        "input_hash": None,
    }
    return NodeState.StateOpened(**{**fields, **changes})


def append(ledger: Ledger, domain_event: object, *, drop: str | None = None) -> int:
    """Appends the event (without field `drop`) to the log; returns its position."""
    stored = ledger.app.mapper.to_stored_event(domain_event)  # type: ignore[arg-type]
    if drop is not None:
        state = ledger.app.mapper.transcoder.decode(stored.state)
        del state[drop]
        stored = StoredEvent(
            originator_id=stored.originator_id,
            originator_version=stored.originator_version,
            topic=stored.topic,
            state=ledger.app.mapper.transcoder.encode(state),
        )
    ledger.app.recorder.insert_events([stored])
    return int(ledger.app.recorder.max_notification_id() or 0)
