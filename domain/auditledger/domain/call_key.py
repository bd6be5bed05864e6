"""CallKey: reserves a caller-supplied call_id for exactly one parent, ledger-wide.

Saved in the same atomic write as the CallRecorded it belongs to, so one idempotency key
can never name two different calls, even when two processes race with it.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

CALL_KEY_NAMESPACE = uuid5(NAMESPACE_URL, "auditledger:call-key")


def call_key_id(call_id: str) -> UUID:
    return uuid5(CALL_KEY_NAMESPACE, call_id)


class CallKey(Aggregate):
    TOPIC = "auditledger:CallKey:v1"
    id: UUID

    class Created(Aggregate.Created):
        """Unused: the library's default creation event, named so its topic is explicit."""

        TOPIC = "auditledger:CallKey.Created:v1"

    class CallKeyReserved(Aggregate.Created):
        TOPIC = "auditledger:CallKey.CallKeyReserved:v1"
        call_id: str
        parent_id: UUID

    @classmethod
    def reserve(cls, call_id: str, parent_id: UUID) -> CallKey:
        return cls(  # type: ignore[call-arg]  # id= via the class annotation
            id=call_key_id(call_id), call_id=call_id, parent_id=parent_id
        )

    @event(CallKeyReserved)
    def __init__(self, *, call_id: str, parent_id: UUID) -> None:
        self.call_id = call_id
        self.parent_id = parent_id
