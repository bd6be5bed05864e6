"""Batch: an aggregation of tokens that one node state executes.

draft (members join, ordinals dense from 0, each token once) -> executing (linked to the
real, non-terminal node state of the same run and aggregation node that runs it)
-> completed | failed; a draft that never ran may fail. Nothing changes after a terminal status.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from .errors import DuplicateMember, InvalidLink
from .lifecycle import BATCH, TERMINAL, BatchStatus
from .values import optional_name, require_count, require_inline, require_name

DRAFT = BatchStatus.DRAFT
EXECUTING = BatchStatus.EXECUTING
BATCH_COMPLETED = BatchStatus.COMPLETED
BATCH_FAILED = BatchStatus.FAILED


class Batch(Aggregate):
    TOPIC = "auditledger:Batch:v1"
    id: UUID

    class Created(Aggregate.Created):
        """Unused: the library's default creation event, named so its topic is explicit."""

        TOPIC = "auditledger:Batch.Created:v1"

    class BatchCreated(Aggregate.Created):
        TOPIC = "auditledger:Batch.BatchCreated:v1"
        run_id: UUID
        aggregation_node_id: str
        attempt: int

    class BatchMemberAdded(Aggregate.Event):
        TOPIC = "auditledger:Batch.BatchMemberAdded:v1"
        token_id: str
        ordinal: int

    class BatchLinked(Aggregate.Event):
        TOPIC = "auditledger:Batch.BatchLinked:v1"
        state_id: UUID
        trigger_reason: str | None = None

    class BatchCompleted(Aggregate.Event):
        TOPIC = "auditledger:Batch.BatchCompleted:v1"

    class BatchFailed(Aggregate.Event):
        TOPIC = "auditledger:Batch.BatchFailed:v1"
        error_json: str

    @classmethod
    def create(
        cls, *, batch_id: UUID, run_id: UUID, aggregation_node_id: str, attempt: int
    ) -> Batch:
        require_name("aggregation_node_id", aggregation_node_id)
        require_count("attempt", attempt)
        return cls(  # type: ignore[call-arg]  # id= via the class annotation
            id=batch_id, run_id=run_id, aggregation_node_id=aggregation_node_id, attempt=attempt
        )

    @event(BatchCreated)
    def __init__(self, *, run_id: UUID, aggregation_node_id: str, attempt: int) -> None:
        self.run_id = run_id
        self.aggregation_node_id = aggregation_node_id
        self.attempt = attempt
        self.status = DRAFT
        self.members: dict[str, int] = {}
        self.state_id: UUID | None = None

    def add_member(self, token_id: str) -> int:
        require_name("token_id", token_id)
        if token_id in self.members:
            raise DuplicateMember(self.id, token_id, self.members[token_id])
        if self.status != DRAFT:
            BATCH.refuse(self.id, self.status, "a batch with a new member")
        ordinal = require_count("ordinal", len(self.members))
        self._member_added(token_id=token_id, ordinal=ordinal)
        return ordinal

    @event(BatchMemberAdded)
    def _member_added(self, token_id: str, ordinal: int) -> None:
        self.members[token_id] = ordinal

    def link(
        self,
        state_id: UUID,
        *,
        run_id: UUID,
        node_id: str,
        state_status: str,
        trigger_reason: str | None = None,
    ) -> None:
        """Link to the node state that executes this batch; the caller proves it exists.
        trigger_reason: why the batch ran now ("count=10", "timeout", "end_of_source")."""
        optional_name("trigger_reason", trigger_reason)
        if self.status == EXECUTING and self.state_id == state_id:
            return
        BATCH.check(self.id, self.status, EXECUTING)
        if run_id != self.run_id:
            raise InvalidLink(
                self.id,
                state_id,
                f"the state belongs to run {run_id}, the batch to run {self.run_id}",
            )
        if node_id != self.aggregation_node_id:
            raise InvalidLink(
                self.id,
                state_id,
                f"the state is at node {node_id!r}, the batch "
                f"aggregates at node {self.aggregation_node_id!r}",
            )
        if state_status in TERMINAL:
            raise InvalidLink(self.id, state_id, f"the state is already {state_status}")
        self._linked(state_id=state_id, trigger_reason=trigger_reason)

    @event(BatchLinked)
    def _linked(self, state_id: UUID, trigger_reason: str | None = None) -> None:
        self.state_id = state_id
        self.status = EXECUTING

    def complete(self) -> None:
        BATCH.check(self.id, self.status, BATCH_COMPLETED)
        self._completed()

    @event(BatchCompleted)
    def _completed(self) -> None:
        self.status = BATCH_COMPLETED

    def fail(self, error_json: str) -> None:
        require_inline("error", error_json)
        BATCH.check(self.id, self.status, BATCH_FAILED)
        self._failed(error_json=error_json)

    @event(BatchFailed)
    def _failed(self, error_json: str) -> None:
        self.status = BATCH_FAILED
