"""ClientFactory: the audited (and replaying) httpx and openai clients the Ledger hands out.

Every client is bound to one parent that must exist and, for recording clients, still be
open or pending: a made-up id fails here, before any request leaves (with `lazy=True`, used
by AsyncLedger so that no store read runs on the event loop: when its first request is
about to leave, off the loop). Options that would route requests around the audited
transport (http_client=, mounts=, proxy=) are refused; pass an inner transport instead
(e.g. transport=httpx.HTTPTransport(proxy=...)). Unknown options are refused with
InvalidArgument naming the accepted ones.

A per-state client costs no connection pool and no SSL context: recording clients borrow
the ledger's shared pool for their transport options (pools.py), or the user's transport=,
and closing the client closes neither.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterable
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any
from uuid import UUID

import httpx

from auditledger.adapters.calls.exchange import CallSink, redaction_set
from auditledger.adapters.calls.llm_summary import ends_event_stream, summarise_exchange
from auditledger.adapters.calls.pools import (
    TRANSPORT_OPTIONS,
    AsyncBorrowed,
    Borrowed,
    SharedPools,
    refuse_options_with_transport,
    take_transport_options,
)
from auditledger.adapters.calls.ports import CallLedger
from auditledger.adapters.calls.replay import AsyncReplayTransport, ReplayCursor, ReplayTransport
from auditledger.adapters.calls.transports import AsyncAuditedTransport, AuditedTransport, OffLoop
from auditledger.domain.errors import InvalidArgument

if TYPE_CHECKING:
    import openai as openai_sdk

_BYPASSES = ("mounts", "proxy", "http_client", "app")
REPLAY_API_KEY = "replayed-from-the-ledger"


class ClientFactory:
    """Builds `ledger.http_client(state_id)`, `ledger.openai(state_id)`, replay clients."""

    def __init__(self, ledger: CallLedger, pools: SharedPools | None = None) -> None:
        self.ledger = ledger
        self.pools = pools if pools is not None else SharedPools()
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
        kwargs = _checked(httpx_kwargs, _accepted("httpx.Client"))
        inner = self.sync_inner(transport, take_transport_options(kwargs))
        audited = self.audited_transport(
            state_id,
            operation_id=operation_id,
            redact_headers=redact_headers,
            transport=inner,
            call_type=call_type,
        )
        return httpx.Client(transport=audited, **kwargs)

    def async_http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        call_type: str = "http",
        lazy: bool = False,
        off_loop: OffLoop | None = None,
        **httpx_kwargs: Any,
    ) -> httpx.AsyncClient:
        kwargs = _checked(httpx_kwargs, _accepted("httpx.AsyncClient"))
        inner = self.async_inner(transport, take_transport_options(kwargs))
        sink, check = self.sink_and_check(state_id, operation_id, call_type, lazy=lazy)
        audited = AsyncAuditedTransport(
            sink, redaction_set(redact_headers), inner, check=check, off_loop=off_loop
        )
        return httpx.AsyncClient(transport=audited, **kwargs)

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
        inner = transport if transport is not None else Borrowed(self.pools.sync_pool({}))
        return AuditedTransport(sink, redaction_set(redact_headers), inner)

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

        kwargs = _parsed_base_url(_checked(openai_kwargs, _accepted("openai.OpenAI")))
        options = take_transport_options(kwargs)
        inner = self.sync_inner(transport, options)
        sink = self.sink(state_id, operation_id, call_type, summarise_exchange, ends_event_stream)
        audited = AuditedTransport(sink, redaction_set(redact_headers), inner)
        http_client = openai_sdk.DefaultHttpxClient(transport=audited)
        client = openai_sdk.OpenAI(http_client=http_client, **kwargs)
        self._openai_transports[client] = inner.inner
        return client

    def async_openai(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        call_type: str = "llm",
        lazy: bool = False,
        off_loop: OffLoop | None = None,
        **openai_kwargs: Any,
    ) -> openai_sdk.AsyncOpenAI:
        import openai as openai_sdk  # imported on first use

        kwargs = _parsed_base_url(_checked(openai_kwargs, _accepted("openai.AsyncOpenAI")))
        inner = self.async_inner(transport, take_transport_options(kwargs))
        sink, check = self.sink_and_check(
            state_id, operation_id, call_type, summarise_exchange, ends_event_stream, lazy=lazy
        )
        audited = AsyncAuditedTransport(
            sink, redaction_set(redact_headers), inner, check=check, off_loop=off_loop
        )
        http_client = openai_sdk.DefaultAsyncHttpxClient(transport=audited)
        return openai_sdk.AsyncOpenAI(http_client=http_client, **kwargs)

    def sync_inner(
        self, transport: httpx.BaseTransport | None, options: dict[str, Any]
    ) -> Borrowed:
        """A borrowed view of the user's transport, else of the shared pool for `options`."""
        if transport is not None:
            refuse_options_with_transport(options)
            return Borrowed(transport)
        return Borrowed(self.pools.sync_pool(options))

    def async_inner(
        self, transport: httpx.AsyncBaseTransport | None, options: dict[str, Any]
    ) -> AsyncBorrowed:
        if transport is not None:
            refuse_options_with_transport(options)
            return AsyncBorrowed(inner=transport)
        return AsyncBorrowed(self.pools, options)

    def close(self) -> None:
        """Close the shared pools (the Ledger's close); users' transports stay open."""
        self.pools.close()

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
        kwargs = _replaying(httpx_kwargs, _accepted("httpx.Client"))
        return httpx.Client(transport=ReplayTransport(cursor), **kwargs)

    def async_replay_http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        **httpx_kwargs: Any,
    ) -> httpx.AsyncClient:
        cursor = self.cursor(state_id, operation_id, redact_headers)
        kwargs = _replaying(httpx_kwargs, _accepted("httpx.AsyncClient"))
        return httpx.AsyncClient(transport=AsyncReplayTransport(cursor), **kwargs)

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
        kwargs = _replaying(openai_kwargs, _accepted("openai.OpenAI"))
        return openai_sdk.OpenAI(http_client=http_client, **kwargs)

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
        kwargs = _replaying(openai_kwargs, _accepted("openai.AsyncOpenAI"))
        return openai_sdk.AsyncOpenAI(http_client=http_client, **kwargs)

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
        if state_id is not None:
            return self._sink_under(parent_id, None, call_type, summarise, ends_stream)
        return self._sink_under(None, parent_id, call_type, summarise, ends_stream)

    def sink_and_check(
        self,
        state_id: str | UUID | None,
        operation_id: str | UUID | None,
        call_type: str,
        summarise: Any = None,
        ends_stream: Any = None,
        *,
        lazy: bool,
    ) -> tuple[CallSink, Callable[[], object] | None]:
        """The sink, checked now; or with lazy, unchecked and the check to run (off the
        event loop) before the first request leaves."""
        if not lazy:
            return self.sink(state_id, operation_id, call_type, summarise, ends_stream), None
        sink = self._sink_under(state_id, operation_id, call_type, summarise, ends_stream)

        def check() -> None:
            self.ledger.call_parent_id(state_id, operation_id, open_only=True)

        return sink, check

    def _sink_under(
        self,
        state_id: str | UUID | None,
        operation_id: str | UUID | None,
        call_type: str,
        summarise: Any,
        ends_stream: Any,
    ) -> CallSink:
        return CallSink(
            self.ledger,
            None if state_id is None else str(state_id),
            None if operation_id is None else str(operation_id),
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


def _checked(kwargs: dict[str, Any], accepted: frozenset[str]) -> dict[str, Any]:
    for key in _BYPASSES:
        if key in kwargs:
            raise InvalidArgument(
                key,
                type(kwargs[key]).__name__,
                "it would bypass the audited transport; pass transport=<inner transport> instead",
            )
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise InvalidArgument(
            "options", unknown, f"not accepted; the accepted options are {sorted(accepted)}"
        )
    return dict(kwargs)


def _parsed_base_url(kwargs: dict[str, Any]) -> dict[str, Any]:
    """base_url= as the SDK makes it (an httpx.URL whose path ends in /), parsed once per
    spelling: a client per node state would otherwise parse the same URL twice each."""
    base_url = kwargs.get("base_url")
    if type(base_url) is str:
        kwargs["base_url"] = _base_url(base_url)
    return kwargs


@lru_cache(maxsize=64)
def _base_url(text: str) -> httpx.URL:
    url = httpx.URL(text)
    return url if url.raw_path.endswith(b"/") else url.copy_with(raw_path=url.raw_path + b"/")


def _replaying(kwargs: dict[str, Any], accepted: frozenset[str]) -> dict[str, Any]:
    """A replay client's options: the recording's transport options are accepted and unused
    (a replay sends nothing)."""
    checked = _checked(kwargs, accepted)
    take_transport_options(checked)
    return checked


@cache
def _accepted(kind: str) -> frozenset[str]:
    """The keyword options a client of `kind` takes here: its constructor's public ones
    (less those that would bypass the audit) and the transport options."""
    if kind.startswith("openai."):
        import openai as openai_sdk

        target: Any = getattr(openai_sdk, kind.split(".")[1])
    else:
        target = getattr(httpx, kind.split(".")[1])
    parameters = inspect.signature(target.__init__).parameters
    names = {name for name in parameters if name != "self" and not name.startswith("_")}
    return frozenset((names | set(TRANSPORT_OPTIONS)) - set(_BYPASSES) - {"transport"})
