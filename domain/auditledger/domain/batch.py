"""Batch: an aggregation of tokens that one node state executes.

draft (members join, ordinals dense from 0, each token once) -> executing (linked to the
real, non-terminal node state of the same run and aggregation node that runs it)
-> completed | failed; a draft that never ran may fail. Nothing changes after a terminal status.

A new batch is attempt 0. Attempt n+1 exists only as the retry of a failed attempt n
(`retry`): same run and aggregation node, created in one write with the members it retries
(all of the failed batch's, or a subset), renumbered densely from 0 in their old order, and
naming its predecessor; its members are fixed. A failed batch has one retry (its id is
derived from the failed batch's), and a retry that fails is retried in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from .errors import DuplicateMember, InvalidArgument, InvalidLink, NotAMember, RetryMembersFixed
from .lifecycle import BATCH, TERMINAL, BatchStatus
from .values import optional_name, require_count, require_inline, require_name

DRAFT = BatchStatus.DRAFT
EXECUTING = BatchStatus.EXECUTING
BATCH_COMPLETED = BatchStatus.COMPLETED
BATCH_FAILED = BatchStatus.FAILED
RETRY_NAMESPACE = uuid5(NAMESPACE_URL, "auditledger:batch-retry")


def retry_id_for(batch_id: UUID) -> UUID:
    """The id of the one retry of a failed batch: two processes retrying it collide."""
    return uuid5(RETRY_NAMESPACE, str(batch_id))


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

    class BatchRetried(BatchCreated):
        TOPIC = "auditledger:Batch.BatchRetried:v1"
        retry_of_batch_id: UUID

        def apply(self, aggregate: Batch) -> None:
            """After __init__ took the BatchCreated fields: the predecessor, assigned."""
            aggregate.retry_of_batch_id = self.retry_of_batch_id

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
        if require_count("attempt", attempt) != 0:
            raise InvalidArgument(
                "attempt",
                attempt,
                "a new batch is attempt 0; attempt n+1 is the retry of a failed batch "
                "(retry_batch)",
            )
        return cls(  # type: ignore[call-arg]  # id= via the class annotation
            id=batch_id, run_id=run_id, aggregation_node_id=aggregation_node_id, attempt=attempt
        )

    @event(BatchCreated)
    def __init__(self, *, run_id: UUID, aggregation_node_id: str, attempt: int) -> None:
        self.run_id = run_id
        self.aggregation_node_id = aggregation_node_id
        self.attempt = attempt
        self.retry_of_batch_id: UUID | None = None
        self.status = DRAFT
        self.members: dict[str, int] = {}
        self.state_id: UUID | None = None

    def retry(self, token_ids: Sequence[str] | None = None) -> Batch:
        """The next attempt of this failed batch, holding `token_ids` (default: every member)
        in their order here, with ordinals renumbered 0..k-1; not yet saved."""
        if self.status != BATCH_FAILED:
            BATCH.refuse(self.id, self.status, "retried (only a failed batch is)")
        chosen = self._members_to_retry(token_ids)
        retry: Batch = self._create(
            self.BatchRetried,
            id=retry_id_for(self.id),
            run_id=self.run_id,
            aggregation_node_id=self.aggregation_node_id,
            attempt=require_count("attempt", self.attempt + 1),
            retry_of_batch_id=self.id,
        )
        for ordinal, token_id in enumerate(chosen):
            retry._member_added(token_id=token_id, ordinal=ordinal)
        return retry

    def _members_to_retry(self, token_ids: Sequence[str] | None) -> list[str]:
        if token_ids is None:
            token_ids = list(self.members)
        if (
            isinstance(token_ids, str)
            or not isinstance(token_ids, Sequence)
            or not all(isinstance(token_id, str) for token_id in token_ids)
        ):
            raise InvalidArgument("members", token_ids, "a list of token ids, or None for all")
        for token_id in token_ids:
            if token_id not in self.members:
                raise NotAMember(
                    self.id, token_id, "a retry holds only members of the batch it retries"
                )
        if len(set(token_ids)) != len(token_ids):
            raise InvalidArgument("members", list(token_ids), "each token once")
        if not token_ids:
            raise InvalidArgument(
                "members", list(token_ids), f"a retry of batch {self.id} holds at least one member"
            )
        return sorted(token_ids, key=self.members.__getitem__)

    def add_member(self, token_id: str) -> int:
        require_name("token_id", token_id)
        if self.retry_of_batch_id is not None:
            raise RetryMembersFixed(self.id, self.retry_of_batch_id, token_id)
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
