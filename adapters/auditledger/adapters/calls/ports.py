"""What the calls room needs of the ledger, and nothing more (the Ledger satisfies all four)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

import httpx
from eventsourcing.domain import Aggregate

from auditledger.adapters.storage.canonical import Payload

A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True)
class RecordedCall:
    call_index: int
    call_type: str
    status: str
    request_hash: str
    request: Any
    response: Any
    error: Any


class CallRecorder(Protocol):
    def record_call(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        call_type: str,
        request: Any,
        response: Any = None,
        error: Any = None,
        status: str | None = None,
        latency_ms: float | None = None,
        started_at: datetime | None = None,
        call_id: str | None = None,
        summary: Mapping[str, Any] | None = None,
        attachments: Sequence[Payload] = (),
    ) -> int: ...


class CallHistory(Protocol):
    def recorded_calls(self, parent_id: str | UUID) -> list[RecordedCall]:
        """The parent's calls with their request and response JSON, in call_index order."""
        ...

    def payload(self, ref: str) -> bytes: ...


class ParentChecker(Protocol):
    def call_parent_id(
        self,
        state_id: str | UUID | None,
        operation_id: str | UUID | None,
        *,
        open_only: bool,
    ) -> UUID:
        """The parent's id; refuses a call with no or two parents, an unknown parent and,
        with open_only, a parent that can take no more calls (ParentClosed)."""
        ...


class CallLedger(CallRecorder, CallHistory, ParentChecker, Protocol):
    """Everything the client factory needs: record, replay, check parents."""


class BatchLedger(CallLedger, Protocol):
    """The Ledger commands the batch runner uses."""

    def load(self, cls: type[A], aggregate_id: str | UUID) -> A: ...

    def link_batch(self, batch_id: str | UUID, state_id: str | UUID) -> None: ...

    def mark_state_pending(self, state_id: str | UUID, reason: str | None = None) -> None: ...

    def complete_state(self, state_id: str | UUID, output: Any = None) -> None: ...

    def fail_state(self, state_id: str | UUID, error: Any = None) -> None: ...

    def complete_batch(self, batch_id: str | UUID) -> None: ...

    def retry_batch(self, batch_id: str | UUID, members: Sequence[str] | None = None) -> str: ...

    def open_state(
        self,
        *,
        run_id: str | UUID,
        token_id: str,
        node_id: str,
        step_index: int,
        input: Any = None,
        attempt: int = 0,
    ) -> str: ...

    def state_id(self, *, token_id: str, node_id: str, attempt: int = 0) -> str: ...

    def fail_batch(self, batch_id: str | UUID, error: Any = None) -> None: ...

    def openai_transport(self, client: Any) -> httpx.BaseTransport | None:
        """The inner transport of an openai client the ledger built, else None."""
        ...
