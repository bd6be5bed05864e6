"""NodeState: one transform boundary, the state a token is in at a node, one attempt.

Its id is derived from (run, token, node, attempt) (in a run started before run-scoped ids:
from (token, node, attempt)), so the event store itself refuses a second StateOpened for the
same attempt, across threads, processes and machines, and a second run may reuse token ids.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from .call_parent import (
    CallParent,
    CallRecordedEvent,
    CompletedEvent,
    FailedEvent,
    ParentEvents,
    PendingEvent,
)
from .lifecycle import NODE_STATE
from .values import optional_digest, require_count, require_name

STATE_NAMESPACE = uuid5(NAMESPACE_URL, "auditledger:node-state")


def state_id_for(token_id: str, node_id: str, attempt: int, run_id: UUID | None = None) -> UUID:
    """uuid5 of (run, token, node, attempt); without run_id, the legacy (token, node, attempt)
    id of runs started before run-scoped ids (Run.scoped_state_ids says which a run uses)."""
    key = f"{len(token_id)}:{token_id}/{len(node_id)}:{node_id}/{attempt}"
    return uuid5(STATE_NAMESPACE, key if run_id is None else f"{run_id}/{key}")


class NodeState(CallParent, Aggregate):
    TOPIC = "auditledger:NodeState:v1"
    id: UUID
    kind = "node state"

    class Created(Aggregate.Created):
        """Unused: the library's default creation event, named so its topic is explicit."""

        TOPIC = "auditledger:NodeState.Created:v1"

    class StateOpened(Aggregate.Created):
        TOPIC = "auditledger:NodeState.StateOpened:v1"
        run_id: UUID
        token_id: str
        node_id: str
        step_index: int
        attempt: int
        input_hash: str | None

    class CallRecorded(CallRecordedEvent):
        TOPIC = "auditledger:NodeState.CallRecorded:v1"

    class StatePending(PendingEvent):
        TOPIC = "auditledger:NodeState.StatePending:v1"

    class StateCompleted(CompletedEvent):
        TOPIC = "auditledger:NodeState.StateCompleted:v1"

    class StateFailed(FailedEvent):
        TOPIC = "auditledger:NodeState.StateFailed:v1"

    LIFECYCLE = NODE_STATE

    @classmethod
    def open(
        cls,
        *,
        run_id: UUID,
        token_id: str,
        node_id: str,
        step_index: int,
        attempt: int,
        input_hash: str | None,
        scoped_id: bool = False,
    ) -> NodeState:
        """scoped_id: derive the id from the run too (Run.scoped_state_ids of its run)."""
        require_name("token_id", token_id)
        require_name("node_id", node_id)
        require_count("step_index", step_index)
        require_count("attempt", attempt)
        optional_digest("input_hash", input_hash)
        return cls(  # type: ignore[call-arg]  # id= via the class annotation
            id=state_id_for(token_id, node_id, attempt, run_id if scoped_id else None),
            run_id=run_id,
            token_id=token_id,
            node_id=node_id,
            step_index=step_index,
            attempt=attempt,
            input_hash=input_hash,
        )

    @event(StateOpened)
    def __init__(
        self,
        *,
        run_id: UUID,
        token_id: str,
        node_id: str,
        step_index: int,
        attempt: int,
        input_hash: str | None,
    ) -> None:
        self.run_id = run_id
        self.token_id = token_id
        self.node_id = node_id
        self.step_index = step_index
        self.attempt = attempt
        self.input_hash = input_hash
        self._start_calls()


NodeState.EVENTS = ParentEvents(
    recorded=NodeState.CallRecorded,
    pending=NodeState.StatePending,
    completed=NodeState.StateCompleted,
    failed=NodeState.StateFailed,
)
