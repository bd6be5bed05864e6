"""What node states and operations share: they are the parents that external calls attach to.

Invariants kept here, before any CallRecorded event exists:
- a call attaches only to a parent that is open or pending, never to a terminal one;
- call_index is allocated by the parent: 0, 1, 2, ... with no gap and no duplicate
  (optimistic concurrency on the parent's version makes concurrent writers take turns);
- a caller-supplied call_id is an idempotency key: retrying the same call returns the index
  it already has, a different call under the same key is refused.

Pending, completed and failed may carry a `Context` (how the parent ran: pool size, retries,
join arrival order), never part of output_hash; completed and failed may carry the
duration the engine measured (finite, >= 0). Stored events from before these fields read
them as None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from hashlib import sha1
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from .errors import CallIdConflict, InvalidArgument, ParentClosed
from .lifecycle import COMPLETED, FAILED, OPEN, PENDING, TERMINAL, Lifecycle
from .values import (
    optional_datetime,
    optional_digest,
    optional_duration,
    optional_inline,
    require_choice,
    require_count,
    require_digest,
    require_inline,
    require_name,
)

SUCCESS = "success"
ERROR = "error"
CALL_STATUSES = frozenset({SUCCESS, ERROR})
CALL_ID_NAMESPACE = uuid5(NAMESPACE_URL, "auditledger:call")
_CALL_ID_PREFIX = CALL_ID_NAMESPACE.bytes


@dataclass(frozen=True)
class Context:
    """How a state ran, as canonical JSON text and its sha256 (also kept as a payload)."""

    json: str
    hash: str

    def fields(self) -> dict[str, str]:
        return {
            "context_json": require_inline("context", self.json),
            "context_hash": require_digest("context_hash", self.hash),
        }


def context_fields(context: Context | None) -> dict[str, str | None]:
    """The event fields of an optional context, validated."""
    if context is None:
        return {"context_json": None, "context_hash": None}
    return dict(context.fields())


@dataclass(frozen=True)
class CallFacts:
    """Everything known about one external call, computed by the caller before recording."""

    call_type: str
    status: str
    request_hash: str
    response_hash: str | None = None
    error_json: str | None = None
    latency_ms: float | None = None
    started_at: datetime | None = None
    summary_json: str | None = None
    call_id: str | None = None
    attachment_hashes: tuple[str, ...] = ()

    def validated(self) -> CallFacts:
        require_name("call_type", self.call_type, max_length=64)
        require_choice("status", self.status, CALL_STATUSES)
        require_digest("request_hash", self.request_hash)
        optional_digest("response_hash", self.response_hash)
        optional_duration("latency_ms", self.latency_ms)
        optional_datetime("started_at", self.started_at)
        optional_inline("error", self.error_json)
        optional_inline("summary", self.summary_json)
        if self.call_id is not None:
            require_name("call_id", self.call_id, max_length=200)
        if not isinstance(self.attachment_hashes, tuple):
            raise InvalidArgument(
                "attachment_hashes", type(self.attachment_hashes).__name__, "a tuple of digests"
            )
        for digest in self.attachment_hashes:
            require_digest("attachment_hashes", digest)
        if self.status == ERROR and self.error_json is None and self.response_hash is None:
            raise InvalidArgument("error", None, "an error call records an error or a response")
        return self


def generated_call_id(parent_id: UUID, call_index: int) -> str:
    """str(uuid5(CALL_ID_NAMESPACE, f"{parent_id}/{call_index}")), spelled out (RFC 4122
    name-based, SHA-1): the same text without building a UUID object, once per call."""
    digest = bytearray(sha1(_CALL_ID_PREFIX + f"{parent_id}/{call_index}".encode()).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class CallRecordedEvent(Aggregate.Event):
    call_id: str
    call_index: int
    call_type: str
    status: str
    request_hash: str
    request_ref: str
    response_hash: str | None
    response_ref: str | None
    error_json: str | None
    latency_ms: float | None
    started_at: datetime | None
    summary_json: str | None
    attachment_hashes: tuple[str, ...] = ()
    """The digests of the call's attachments (its HTTP bodies and parts, raw lines): named
    here so the hash chain, which covers this event's bytes, covers their bytes too. Events
    recorded before the field existed decode with ()."""

    def apply(self, aggregate: Any) -> None:
        aggregate.call_count = self.call_index + 1
        aggregate.call_keys[self.call_id] = (self.call_index, self.request_hash)


class PendingEvent(Aggregate.Event):
    reason: str | None
    context_json: str | None = None
    context_hash: str | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.status = PENDING


class CompletedEvent(Aggregate.Event):
    output_hash: str | None
    context_json: str | None = None
    context_hash: str | None = None
    duration_ms: float | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.status = COMPLETED
        aggregate.output_hash = self.output_hash


class FailedEvent(Aggregate.Event):
    error_json: str
    context_json: str | None = None
    context_hash: str | None = None
    duration_ms: float | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.status = FAILED
        aggregate.error_json = self.error_json


@dataclass(frozen=True)
class ParentEvents:
    """The event classes one kind of parent triggers (its own, with its own topics).

    Set on the aggregate class after its class statement: eventsourcing's metaclass redefines
    nested event classes, so only the finished class holds the ones to trigger.
    """

    recorded: type[CallRecordedEvent]
    pending: type[PendingEvent]
    completed: type[CompletedEvent]
    failed: type[FailedEvent]


class CallParent:
    """Base of the aggregates that own calls; subclasses name their own events and topics."""

    id: UUID
    kind: ClassVar[str] = "parent"
    LIFECYCLE: ClassVar[Lifecycle]
    EVENTS: ClassVar[ParentEvents]
    status: str
    call_count: int
    call_keys: dict[str, tuple[int, str]]

    def _trigger(self, event_class: type[Aggregate.Event], **kwargs: Any) -> None:
        self.trigger_event(event_class, **kwargs)  # type: ignore[attr-defined]

    def _start_calls(self) -> None:
        self.status = OPEN
        self.call_count = 0
        self.call_keys = {}
        self.output_hash: str | None = None
        self.error_json: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def existing_call(self, call_id: str | None, request_hash: str) -> int | None:
        """The index already recorded under this idempotency key, if any."""
        if call_id is None or call_id not in self.call_keys:
            return None
        index, recorded_hash = self.call_keys[call_id]
        if recorded_hash != request_hash:
            raise CallIdConflict(
                call_id, self.id, f"already recorded as call {index} with another request"
            )
        return index

    def record_call(self, facts: CallFacts) -> int:
        facts.validated()
        existing = self.existing_call(facts.call_id, facts.request_hash)
        if existing is not None:
            return existing
        if self.is_terminal:
            raise ParentClosed(self.id, self.kind, self.status)
        index = require_count("call_index", self.call_count)
        self._trigger(
            self.EVENTS.recorded,
            call_id=facts.call_id or generated_call_id(self.id, index),
            call_index=index,
            call_type=facts.call_type,
            status=facts.status,
            request_hash=facts.request_hash,
            request_ref=facts.request_hash,
            response_hash=facts.response_hash,
            response_ref=facts.response_hash,
            error_json=facts.error_json,
            latency_ms=facts.latency_ms,
            started_at=facts.started_at,
            summary_json=facts.summary_json,
            attachment_hashes=facts.attachment_hashes,
        )
        return index

    def mark_pending(self, reason: str | None = None, *, context: Context | None = None) -> None:
        optional_inline("reason", reason)
        fields = context_fields(context)
        self.LIFECYCLE.check(self.id, self.status, PENDING)
        self._trigger(self.EVENTS.pending, reason=reason, **fields)

    def complete(
        self,
        output_hash: str | None,
        *,
        context: Context | None = None,
        duration_ms: float | None = None,
    ) -> None:
        optional_digest("output_hash", output_hash)
        fields = context_fields(context)
        duration = optional_duration("duration_ms", duration_ms)
        self.LIFECYCLE.check(self.id, self.status, COMPLETED)
        self._trigger(
            self.EVENTS.completed, output_hash=output_hash, duration_ms=duration, **fields
        )

    def fail(
        self,
        error_json: str,
        *,
        context: Context | None = None,
        duration_ms: float | None = None,
    ) -> None:
        require_inline("error", error_json)
        fields = context_fields(context)
        duration = optional_duration("duration_ms", duration_ms)
        self.LIFECYCLE.check(self.id, self.status, FAILED)
        self._trigger(self.EVENTS.failed, error_json=error_json, duration_ms=duration, **fields)
