"""Replay: serve a parent's recorded HTTP exchanges instead of the network.

Invariants kept here:
- exchanges are served in call_index order, one per request; calls that are not HTTP
  exchanges (e.g. per-member batch results) are skipped, never served;
- a request is served only when the hash of its canonical request JSON (built exactly as
  the audited transport builds it, redaction included) equals the recorded request_hash;
  anything else is ReplayMismatch naming the parent, the index and the fields that differ;
- a recorded transport failure is raised again (the same httpx exception type), a recorded
  response comes back byte for byte (re-checked against its hash), and nothing is written.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import httpx

from auditledger.adapters.calls.exchange import is_http_request, request_json
from auditledger.adapters.calls.ports import CallHistory, RecordedCall
from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.storage.event_store import LedgerApplication
from auditledger.adapters.storage.payloads import PayloadStore
from auditledger.domain.call_parent import CallRecordedEvent
from auditledger.domain.errors import ReplayExhausted, ReplayMismatch

__all__ = ["RecordedCall", "ReplayCursor", "read_recorded_calls", "recorded_calls"]


def read_recorded_calls(
    app: LedgerApplication, payloads: PayloadStore, parent_id: UUID
) -> list[RecordedCall]:
    """The parent's calls as its event log has them, in call_index order."""
    events = [e for e in app.events.get(parent_id) if isinstance(e, CallRecordedEvent)]
    refs = [ref for e in events for ref in (e.request_ref, e.response_ref) if ref is not None]
    stored = payloads.get_many(refs)  # one read per chunk, each re-hashed
    calls = [
        RecordedCall(
            call_index=event.call_index,
            call_type=event.call_type,
            status=event.status,
            request_hash=event.request_hash,
            request=json.loads(stored[event.request_ref]),
            response=None if event.response_ref is None else json.loads(stored[event.response_ref]),
            error=None if event.error_json is None else json.loads(event.error_json),
        )
        for event in events
    ]
    return sorted(calls, key=lambda call: call.call_index)


def recorded_calls(history: CallHistory, parent_id: str | UUID) -> list[RecordedCall]:
    """The parent's recorded calls (kept for callers of 0.x: `ledger.recorded_calls(id)`)."""
    return history.recorded_calls(parent_id)


class ReplayCursor:
    """The next recorded exchange of one parent; shared by the sync and async transports."""

    def __init__(self, history: CallHistory, parent_id: UUID, redact: frozenset[str]) -> None:
        self.history = history
        self.parent_id = parent_id
        self.redact = redact
        calls = history.recorded_calls(parent_id)
        self._calls = [c for c in calls if is_http_request(c.request)]
        self._next = 0
        self._lock = threading.Lock()

    def serve(self, request: httpx.Request, body: bytes) -> tuple[httpx.Response, RecordedCall]:
        live = request_json(request, body, self.redact)
        with self._lock:
            if self._next >= len(self._calls):
                raise ReplayExhausted(self.parent_id, len(self._calls))
            call = self._calls[self._next]
            live_hash = Payload.of_json(live, "request").digest
            if live_hash != call.request_hash:
                raise ReplayMismatch(
                    self.parent_id, call.call_index, _differences(call.request, live)
                )
            self._next += 1
        if call.response is None:
            raise _replayed_failure(call.error, request)
        recorded = call.response
        data = self.history.payload(recorded["body"]["sha256"])
        response = httpx.Response(
            status_code=recorded["status_code"],
            headers=[(name, value) for name, value in recorded["headers"]],
            stream=_ReplayStream(data, call, request),
            request=request,
        )
        return response, call


class ReplayTransport(httpx.BaseTransport):
    def __init__(self, cursor: ReplayCursor) -> None:
        self.cursor = cursor

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.cursor.serve(request, request.read())[0]


class AsyncReplayTransport(httpx.AsyncBaseTransport):
    def __init__(self, cursor: ReplayCursor) -> None:
        self.cursor = cursor

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self.cursor.serve(request, await request.aread())[0]


class _ReplayStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """The recorded body, then the recorded mid-body failure if there was one."""

    def __init__(self, data: bytes, call: RecordedCall, request: httpx.Request) -> None:
        self.data, self.call, self.request = data, call, request

    def __iter__(self) -> Iterator[bytes]:
        if self.data:
            yield self.data
        if self.call.error is not None and self.call.response.get("truncated"):
            raise _replayed_failure(self.call.error, self.request)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk


def _replayed_failure(error: Any, request: httpx.Request) -> Exception:
    kind = getattr(httpx, str((error or {}).get("type")), None)
    message = str((error or {}).get("message", "recorded failure"))
    if isinstance(kind, type) and issubclass(kind, httpx.TransportError):
        return kind(message, request=request)
    return httpx.TransportError(f"replayed {(error or {}).get('type')}: {message}")


def _differences(recorded: Any, live: dict[str, Any]) -> list[str]:
    if not isinstance(recorded, dict):
        return ["request"]
    differ = [key for key in ("method", "url", "body") if recorded.get(key) != live.get(key)]
    old = {name: value for name, value in recorded.get("headers", [])}
    new = {name: value for name, value in live["headers"]}
    differ += [
        f"header {name}"
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name)
    ]
    return differ or ["header order"]
