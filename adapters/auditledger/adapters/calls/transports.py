"""Audited httpx transports: every request through them is one call under one parent.

Invariants kept here:
- each request that reaches the transport is recorded exactly once (redirect hops and SDK
  retries pass through separately, so each is its own call with its own dense index);
- a transport exception is recorded as an error call before it reaches the caller, who then
  gets the original exception; if the ledger refuses the call, the LedgerError is raised
  instead (from the original), because an unrecorded call must never pass silently;
- a response is recorded when its body has been read to the end, or as truncated with the
  byte count when the caller closes it early; the stream is wrapped, never read twice;
- closing one closes its inner transport: the ledger's clients hand it a borrowed,
  non-closing view of a shared pool (pools.py), so only what it owns is closed;
- an async transport given `check` runs it (off the event loop) before its first request
  leaves, and sends nothing if it raises;
- an async transport records off the event loop: in a worker thread, or through `off_loop`
  (AsyncLedger passes its writer, so the recording shares its commits).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio.to_thread
import httpx

from auditledger.adapters.calls.exchange import CallSink, Exchange

OffLoop = Callable[[Callable[[], object]], Awaitable[object]]


class AuditedTransport(httpx.BaseTransport):
    def __init__(
        self, sink: CallSink, redact: frozenset[str], inner: httpx.BaseTransport | None = None
    ) -> None:
        self.sink = sink
        self.redact = redact
        self.inner = inner if inner is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        exchange = Exchange(request, request.read(), self.redact)
        try:
            response = self.inner.handle_request(request)
        except Exception as failure:
            self.sink.record(exchange, failure=failure)
            raise
        exchange.response = response
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_RecordedStream(self.sink, exchange, response.stream),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self.inner.close()


class AsyncAuditedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        sink: CallSink,
        redact: frozenset[str],
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        check: Callable[[], object] | None = None,
        off_loop: OffLoop | None = None,
    ) -> None:
        self.sink = sink
        self.redact = redact
        self.inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self.check = check
        self.off_loop: OffLoop = off_loop or anyio.to_thread.run_sync

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.check is not None:
            await self.off_loop(self.check)
            self.check = None
        exchange = Exchange(request, await request.aread(), self.redact)
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as failure:
            await _record_async(self.off_loop, self.sink, exchange, failure=failure)
            raise
        exchange.response = response
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_AsyncRecordedStream(self.off_loop, self.sink, exchange, response.stream),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _RecordedStream(httpx.SyncByteStream):
    def __init__(self, sink: CallSink, exchange: Exchange, inner: object) -> None:
        assert isinstance(inner, httpx.SyncByteStream)
        self.sink, self.exchange, self.inner = sink, exchange, inner

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.inner:
                self.exchange.take(chunk)
                yield chunk
        except Exception as failure:
            self.sink.record(self.exchange, failure=failure, truncated=True)
            raise
        self.sink.record(self.exchange)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            if not self.exchange.recorded:
                complete = self.sink.complete(self.exchange)
                self.sink.record(self.exchange, truncated=not complete)


class _AsyncRecordedStream(httpx.AsyncByteStream):
    def __init__(
        self, off_loop: OffLoop, sink: CallSink, exchange: Exchange, inner: object
    ) -> None:
        assert isinstance(inner, httpx.AsyncByteStream)
        self.sink, self.exchange, self.inner = sink, exchange, inner
        self.off_loop = off_loop

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                self.exchange.take(chunk)
                yield chunk
        except Exception as failure:
            await _record_async(
                self.off_loop, self.sink, self.exchange, failure=failure, truncated=True
            )
            raise
        await _record_async(self.off_loop, self.sink, self.exchange)

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            if not self.exchange.recorded:
                complete = self.sink.complete(self.exchange)
                await _record_async(self.off_loop, self.sink, self.exchange, truncated=not complete)


async def _record_async(
    off_loop: OffLoop,
    sink: CallSink,
    exchange: Exchange,
    *,
    failure: BaseException | None = None,
    truncated: bool = False,
) -> None:
    """Record off the event loop: ledger writes are blocking database I/O."""
    if exchange.recorded:
        return
    exchange.recorded = True  # claimed here, on the loop: one record per exchange

    def record() -> None:
        exchange.recorded = False  # sink.record's own guard; a refused batch runs it again
        sink.record(exchange, failure=failure, truncated=truncated)

    await off_loop(record)
