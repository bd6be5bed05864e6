"""Operation: source-load or sink-write I/O of a run, a parent for calls like a node state."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from .call_parent import (
    CallParent,
    CallRecordedEvent,
    CompletedEvent,
    FailedEvent,
    ParentEvents,
    PendingEvent,
)
from .lifecycle import OPERATION
from .values import optional_digest, require_name


class Operation(CallParent, Aggregate):
    TOPIC = "auditledger:Operation:v1"
    id: UUID
    kind = "operation"

    class Created(Aggregate.Created):
        """Unused: the library's default creation event, named so its topic is explicit."""

        TOPIC = "auditledger:Operation.Created:v1"

    class OperationStarted(Aggregate.Created):
        TOPIC = "auditledger:Operation.OperationStarted:v1"
        run_id: UUID
        node_id: str
        operation_type: str
        input_hash: str | None

    class CallRecorded(CallRecordedEvent):
        TOPIC = "auditledger:Operation.CallRecorded:v1"

    class OperationPending(PendingEvent):
        TOPIC = "auditledger:Operation.OperationPending:v1"

    class OperationCompleted(CompletedEvent):
        TOPIC = "auditledger:Operation.OperationCompleted:v1"

    class OperationFailed(FailedEvent):
        TOPIC = "auditledger:Operation.OperationFailed:v1"

    LIFECYCLE = OPERATION

    @classmethod
    def start(
        cls,
        *,
        operation_id: UUID,
        run_id: UUID,
        node_id: str,
        operation_type: str,
        input_hash: str | None,
    ) -> Operation:
        require_name("node_id", node_id)
        require_name("operation_type", operation_type, max_length=64)
        optional_digest("input_hash", input_hash)
        return cls(  # type: ignore[call-arg]  # id= via the class annotation
            id=operation_id,
            run_id=run_id,
            node_id=node_id,
            operation_type=operation_type,
            input_hash=input_hash,
        )

    @event(OperationStarted)
    def __init__(
        self, *, run_id: UUID, node_id: str, operation_type: str, input_hash: str | None
    ) -> None:
        self.run_id = run_id
        self.node_id = node_id
        self.operation_type = operation_type
        self.input_hash = input_hash
        self._start_calls()


Operation.EVENTS = ParentEvents(
    recorded=Operation.CallRecorded,
    pending=Operation.OperationPending,
    completed=Operation.OperationCompleted,
    failed=Operation.OperationFailed,
)
