"""SharedPools: one connection pool and SSL context per Ledger and set of transport options.

Invariants kept here:
- per distinct transport options (verify, cert, http2, limits, ...) there is one SSL context,
  one sync pool, and one async pool per event loop (an asyncio connection belongs to the loop
  that opened it, so a second `asyncio.run` gets pools of its own, never a dead loop's);
- the SSL context (loading the CA bundle: tens of ms of CPU) is never built on an event loop:
  an async borrower has it built in a worker thread before the loop's pool is built;
- per-state clients only ever borrow a pool (`Borrowed`, `AsyncBorrowed`): closing them
  leaves it open; `close()` (called by `Ledger.close()`) closes every sync pool, and the
  async pools whose loop it can still reach; `aclose()` closes the running loop's pools;
- a transport the user passes is never in here: it stays the user's;
- the SSL contexts of verify=True/False without a cert (the CA bundle alone costs tens of ms
  of CPU to load) are built once per process and environment, and shared by every ledger.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import weakref
from collections.abc import Hashable, Mapping
from contextlib import suppress
from typing import Any

import anyio.to_thread
import httpx

from auditledger.domain.errors import InvalidArgument

TRANSPORT_OPTIONS = (
    "verify",
    "cert",
    "trust_env",
    "http1",
    "http2",
    "limits",
    "retries",
    "local_address",
    "uds",
    "socket_options",
)
_SSL_OPTIONS = ("verify", "cert", "trust_env")
PoolKey = tuple[tuple[str, Hashable], ...]
_closing: set[asyncio.Task[None]] = set()  # pools closing on a running loop, kept alive
_SSL_ENVIRONMENT = ("SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE")
_process_contexts: dict[Hashable, ssl.SSLContext] = {}
_process_lock = threading.Lock()


def pool_key(options: Mapping[str, Any]) -> PoolKey:
    """A key from transport options: equal options (Limits compare by value) share a pool."""
    return tuple(sorted((name, _keyable(value)) for name, value in options.items()))


def take_transport_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the transport options out of a client's keyword arguments."""
    return {name: kwargs.pop(name) for name in TRANSPORT_OPTIONS if name in kwargs}


def refuse_options_with_transport(options: Mapping[str, Any]) -> None:
    if options:
        raise InvalidArgument(
            "transport",
            sorted(options),
            "transport options configure the pool the ledger builds; with transport= "
            "configure your own transport instead",
        )


class SharedPools:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[PoolKey, ssl.SSLContext] = {}
        self._sync: dict[PoolKey, httpx.HTTPTransport] = {}
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[PoolKey, httpx.AsyncHTTPTransport]
        ] = weakref.WeakKeyDictionary()
        self.closed = False

    def sync_pool(self, options: Mapping[str, Any]) -> httpx.HTTPTransport:
        key = pool_key(options)
        with self._lock:
            pool = self._sync.get(key)
            if pool is None:
                pool = httpx.HTTPTransport(**self._built_options(key, options))
                self._sync[key] = pool
            return pool

    def async_pool(self, options: Mapping[str, Any]) -> httpx.AsyncHTTPTransport:
        """The running loop's pool for these options (call it inside a coroutine)."""
        loop = asyncio.get_running_loop()
        key = pool_key(options)
        with self._lock:
            pools = self._async.setdefault(loop, {})
            pool = pools.get(key)
            if pool is None:
                pool = httpx.AsyncHTTPTransport(**self._built_options(key, options))
                pools[key] = pool
            return pool

    def ready(self, options: Mapping[str, Any]) -> bool:
        """Whether a pool for these options can be built without loading a CA bundle."""
        return _given_context(options) or pool_key(options) in self._contexts

    def prepare(self, options: Mapping[str, Any]) -> None:
        """Build the SSL context for these options (blocking: call it off the event loop)."""
        if self.ready(options):
            return
        context = _new_context(options)  # outside the lock: a loop may be asking for a pool
        with self._lock:
            self._contexts.setdefault(pool_key(options), context)

    @property
    def count(self) -> int:
        """How many pools are open (sync, plus async across loops)."""
        with self._lock:
            return len(self._sync) + sum(len(p) for p in self._async.values())

    def close(self) -> None:
        """Close the sync pools, and the async pools of loops that are not running here."""
        with self._lock:
            sync, self._sync = list(self._sync.values()), {}
            by_loop = [(loop, list(pools.values())) for loop, pools in self._async.items()]
            self._async = weakref.WeakKeyDictionary()
            self.closed = True
        for pool in sync:
            pool.close()
        for loop, pools in by_loop:
            _close_on(loop, pools)

    async def aclose(self) -> None:
        """Close the running loop's async pools (AsyncLedger's aclose), then the rest."""
        loop = asyncio.get_running_loop()
        with self._lock:
            mine = list(self._async.pop(loop, {}).values())
        for pool in mine:
            await pool.aclose()
        self.close()

    def _built_options(self, key: PoolKey, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options with one SSL context per key, built once and shared by every pool."""
        if self.closed:
            raise InvalidArgument("ledger", "closed", "the ledger is closed; open it again")
        built = {k: v for k, v in options.items() if k not in _SSL_OPTIONS}
        if _given_context(options):
            built["verify"] = options["verify"]
            return built
        context = self._contexts.get(key)
        if context is None:
            context = _new_context(options)
            self._contexts[key] = context
        built["verify"] = context
        return built


def process_context(ssl_options: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The process's SSL context for verify=True or False and no cert, keyed by the
    environment read when one is built (CA file or directory, key log); None for options
    it does not cover (a CA path, an SSLContext of the caller's, a client certificate)."""
    verify, trust_env = ssl_options.get("verify", True), ssl_options.get("trust_env", True)
    if type(verify) is not bool or type(trust_env) is not bool or "cert" in ssl_options:
        return None
    key = (verify, trust_env, *(os.environ.get(name) for name in _SSL_ENVIRONMENT))
    with _process_lock:
        context = _process_contexts.get(key)
        if context is None:
            context = httpx.create_ssl_context(verify=verify, trust_env=trust_env)
            _process_contexts[key] = context
        return context


class Borrowed(httpx.BaseTransport):
    """A non-closing view of a transport: closing the client that holds it keeps the pool."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)


class AsyncBorrowed(httpx.AsyncBaseTransport):
    """A non-closing view of the running loop's shared pool (or of a user's transport)."""

    def __init__(
        self,
        pools: SharedPools | None = None,
        options: Mapping[str, Any] | None = None,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.pools, self.options, self.inner = pools, dict(options or {}), inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.inner is not None:
            return await self.inner.handle_async_request(request)
        assert self.pools is not None
        if not self.pools.ready(self.options):
            await anyio.to_thread.run_sync(self.pools.prepare, self.options)
        return await self.pools.async_pool(self.options).handle_async_request(request)


def _given_context(options: Mapping[str, Any]) -> bool:
    return isinstance(options.get("verify"), ssl.SSLContext) and "cert" not in options


def _new_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    ssl_options = {k: v for k, v in options.items() if k in _SSL_OPTIONS}
    return process_context(ssl_options) or httpx.create_ssl_context(**ssl_options)


def _keyable(value: Any) -> Hashable:
    """The value if hashable (an SSLContext by identity), else its repr (Limits, lists)."""
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return (type(value).__name__, value)


def _close_on(loop: asyncio.AbstractEventLoop, pools: list[httpx.AsyncHTTPTransport]) -> None:
    """Close async pools on their own loop when it can still run them; else let them go
    (their sockets close when collected)."""

    async def close_all() -> None:
        for pool in pools:
            with suppress(Exception):
                await pool.aclose()

    if loop.is_closed():
        return
    if loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(close_all())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        else:
            asyncio.run_coroutine_threadsafe(close_all(), loop)
        return
    with suppress(Exception):
        loop.run_until_complete(close_all())
