"""ClientFactory: the audited (and replaying) httpx and openai clients the Ledger hands out.

Every client is bound to one parent that must exist and, for recording clients, still be
open or pending: a made-up id fails here, before any request leaves. Options that would
route requests around the audited transport (http_client=, mounts=, proxy=) are refused;
pass an inner transport instead (e.g. transport=httpx.HTTPTransport(proxy=...)).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from uuid import UUID

import httpx

from auditledger.adapters.calls.exchange import CallSink, redaction_set
from auditledger.adapters.calls.llm_summary import ends_event_stream, summarise_exchange
from auditledger.adapters.calls.ports import CallLedger
from auditledger.adapters.calls.replay import AsyncReplayTransport, ReplayCursor, ReplayTransport
from auditledger.adapters.calls.transports import AsyncAuditedTransport, AuditedTransport
from auditledger.domain.errors import InvalidArgument

if TYPE_CHECKING:
    import openai as openai_sdk

_TRANSPORT_OPTIONS = ("verify", "cert", "trust_env", "http1", "http2", "limits", "retries")
_BYPASSES = ("mounts", "proxy", "http_client", "app")
REPLAY_API_KEY = "replayed-from-the-ledger"


class ClientFactory:
    """Builds `ledger.http_client(state_id)`, `ledger.openai(state_id)`, replay clients."""

    def __init__(self, ledger: CallLedger) -> None:
        self.ledger = ledger
        self._openai_transports: weakref.WeakKeyDictionary[Any, httpx.BaseTransport] = (
            weakref.WeakKeyDictionary()
        )

    def openai_transport(self, client: Any) -> httpx.BaseTransport | None:
        """The inner transport of an openai client this factory built (else None)."""
        return self._openai_transports.get(client)

    def http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.BaseTransport | None = None,
        call_type: str = "http",
        **httpx_kwargs: Any,
    ) -> httpx.Client:
        """An httpx.Client whose every request is a call under the state (or operation)."""
        audited = self.audited_transport(
            state_id,
            operation_id=operation_id,
            redact_headers=redact_headers,
            transport=transport or _inner(httpx.HTTPTransport, httpx_kwargs),
            call_type=call_type,
        )
        return httpx.Client(transport=audited, **_checked(httpx_kwargs))

    def async_http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        call_type: str = "http",
        **httpx_kwargs: Any,
    ) -> httpx.AsyncClient:
        sink = self.sink(state_id, operation_id, call_type)
        inner = transport or _inner(httpx.AsyncHTTPTransport, httpx_kwargs)
        audited = AsyncAuditedTransport(sink, redaction_set(redact_headers), inner)
        return httpx.AsyncClient(transport=audited, **_checked(httpx_kwargs))

    def audited_transport(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.BaseTransport | None = None,
        call_type: str = "http",
    ) -> AuditedTransport:
        sink = self.sink(state_id, operation_id, call_type)
        return AuditedTransport(sink, redaction_set(redact_headers), transport)

    def openai(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.BaseTransport | None = None,
        call_type: str = "llm",
        **openai_kwargs: Any,
    ) -> openai_sdk.OpenAI:
        """A real openai.OpenAI; each HTTP exchange (retries too) is an llm call with a summary."""
        import openai as openai_sdk  # imported on first use: it is heavy

        sink = self.sink(state_id, operation_id, call_type, summarise_exchange, ends_event_stream)
        audited = AuditedTransport(sink, redaction_set(redact_headers), transport)
        http_client = openai_sdk.DefaultHttpxClient(transport=audited)
        client = openai_sdk.OpenAI(http_client=http_client, **_checked(openai_kwargs))
        self._openai_transports[client] = audited.inner
        return client

    def async_openai(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        call_type: str = "llm",
        **openai_kwargs: Any,
    ) -> openai_sdk.AsyncOpenAI:
        import openai as openai_sdk  # imported on first use

        sink = self.sink(state_id, operation_id, call_type, summarise_exchange, ends_event_stream)
        audited = AsyncAuditedTransport(sink, redaction_set(redact_headers), transport)
        http_client = openai_sdk.DefaultAsyncHttpxClient(transport=audited)
        return openai_sdk.AsyncOpenAI(http_client=http_client, **_checked(openai_kwargs))

    def replay_http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        **httpx_kwargs: Any,
    ) -> httpx.Client:
        """An httpx.Client answered from the parent's recorded exchanges; it writes nothing."""
        cursor = self.cursor(state_id, operation_id, redact_headers)
        return httpx.Client(transport=ReplayTransport(cursor), **_checked(httpx_kwargs))

    def async_replay_http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        **httpx_kwargs: Any,
    ) -> httpx.AsyncClient:
        cursor = self.cursor(state_id, operation_id, redact_headers)
        return httpx.AsyncClient(transport=AsyncReplayTransport(cursor), **_checked(httpx_kwargs))

    def replay_openai(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        **openai_kwargs: Any,
    ) -> openai_sdk.OpenAI:
        """An openai_sdk.OpenAI answered from the ledger; pass the options the recording used."""
        import openai as openai_sdk  # imported on first use: it is heavy

        cursor = self.cursor(state_id, operation_id, redact_headers)
        http_client = openai_sdk.DefaultHttpxClient(transport=ReplayTransport(cursor))
        openai_kwargs.setdefault("api_key", REPLAY_API_KEY)
        return openai_sdk.OpenAI(http_client=http_client, **_checked(openai_kwargs))

    def replay_async_openai(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        **openai_kwargs: Any,
    ) -> openai_sdk.AsyncOpenAI:
        import openai as openai_sdk  # imported on first use

        cursor = self.cursor(state_id, operation_id, redact_headers)
        http_client = openai_sdk.DefaultAsyncHttpxClient(transport=AsyncReplayTransport(cursor))
        openai_kwargs.setdefault("api_key", REPLAY_API_KEY)
        return openai_sdk.AsyncOpenAI(http_client=http_client, **_checked(openai_kwargs))

    def sink(
        self,
        state_id: str | UUID | None,
        operation_id: str | UUID | None,
        call_type: str,
        summarise: Any = None,
        ends_stream: Any = None,
    ) -> CallSink:
        """Where calls under the parent go; refuses an unknown parent, or one that is closed."""
        parent_id = self.ledger.call_parent_id(state_id, operation_id, open_only=True)
        is_state = state_id is not None
        return CallSink(
            self.ledger,
            str(parent_id) if is_state else None,
            None if is_state else str(parent_id),
            call_type,
            summarise,
            ends_stream,
        )

    def cursor(
        self,
        state_id: str | UUID | None,
        operation_id: str | UUID | None,
        redact_headers: Iterable[str],
    ) -> ReplayCursor:
        parent_id = self.ledger.call_parent_id(state_id, operation_id, open_only=False)
        return ReplayCursor(self.ledger, parent_id, redaction_set(redact_headers))


def _inner(kind: Any, httpx_kwargs: dict[str, Any]) -> Any:
    options = {key: httpx_kwargs.pop(key) for key in _TRANSPORT_OPTIONS if key in httpx_kwargs}
    return kind(**options)


def _checked(kwargs: dict[str, Any]) -> dict[str, Any]:
    for key in _BYPASSES:
        if key in kwargs:
            raise InvalidArgument(
                key,
                type(kwargs[key]).__name__,
                "it would bypass the audited transport; pass transport=<inner transport> instead",
            )
    return kwargs
