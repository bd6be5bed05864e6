"""AsyncLedger: the Ledger's commands as coroutines, for asyncio pipelines.

Invariants kept here:
- no command blocks the event loop: each runs, unchanged, on the wrapped Ledger in one writer
  thread (writing/command_batches.py), which runs the queued commands of concurrent
  coroutines back to back and commits them together; each `await` returns once its own
  facts are durable. Reads run in a pool of worker threads. Errors are the Ledger's typed
  errors, raised from the `await`; a refused command writes nothing and does not disturb
  the others of its batch;
- a cancelled command landed whole or not at all: a command not yet started is dropped; one
  already running is waited for (shielded) before the CancelledError is raised, so when the
  caller sees the cancellation, the store holds the whole fact or nothing of it;
- `async with ledger.unit_of_work():` runs the block's commands in one thread of its own (the
  Ledger's units are per thread; the thread is reused by later units once this one has
  exited, writing/unit_threads.py), commits when the block ends and writes nothing if it
  raises or is cancelled;
- audited clients check their parent off the loop, before their first request leaves (not
  when built: building one does no I/O), record each exchange through the writer (in an
  open unit: into the unit), and share the Ledger's pools (calls/pools.py), closed by
  `aclose()`; opening builds the default options' SSL context (loading the CA bundle), so
  no client's first request waits for it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar
from uuid import UUID

import httpx
from sqlalchemy import Engine

from auditledger.adapters.ledger import Ledger
from auditledger.adapters.writing.awaiting import settled
from auditledger.adapters.writing.command_batches import CommandBatcher
from auditledger.adapters.writing.unit_threads import UnitThreads
from auditledger.adapters.writing.units import UnitOfWork
from auditledger.domain.errors import UnitNesting

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import openai as openai_sdk

P = ParamSpec("P")
R = TypeVar("R")
WORKERS = 16


def _command(
    method: Callable[Concatenate[Ledger, P], R], *, writes: bool = True
) -> Callable[Concatenate[AsyncLedger, P], Coroutine[Any, Any, R]]:
    """The Ledger method as a coroutine of the same name and arguments, run off the loop:
    by the writer thread (or the open unit's thread), or, for a read, in the pool."""

    async def command(ledger: AsyncLedger, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if writes:
            return await ledger.write(method, ledger.ledger, *args, **kwargs)
        return await ledger.run(method, ledger.ledger, *args, **kwargs)

    command.__name__ = command.__qualname__ = method.__name__
    command.__doc__ = method.__doc__
    setattr(command, "__signature__", inspect.signature(method))  # noqa: B010 (help(), IDEs)
    return command


class AsyncLedger:
    def __init__(self, ledger: Ledger, *, workers: int = WORKERS) -> None:
        self.ledger = ledger
        self.workers = workers
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="auditledger-async")
        self.writer = CommandBatcher(ledger.unit_of_work)
        self.unit_threads = UnitThreads(keep=workers)
        self.closed = False
        self._unit: ContextVar[ThreadPoolExecutor | None] = ContextVar("unit", default=None)

    @classmethod
    def open(
        cls,
        url: str = "sqlite:///audit",
        *,
        landscape: str | None = None,
        group_commit: bool = True,
        retention_days: int | None = None,
        workers: int = WORKERS,
    ) -> Opening:
        """`async with AsyncLedger.open(url) as ledger:` or `ledger = await AsyncLedger.open(url)`;
        the options of Ledger.open (group commit on by default), opened off the loop."""

        def opened() -> AsyncLedger:
            ledger = Ledger.open(
                url,
                landscape=landscape,
                group_commit=group_commit,
                retention_days=retention_days,
            )
            ledger.clients.pools.prepare({})  # the default clients' SSL context, off the loop
            return cls(ledger, workers=workers)

        return Opening(opened)

    @property
    def url(self) -> str:
        return self.ledger.url

    @property
    def group_commit(self) -> bool:
        return self.ledger.group_commit

    async def aclose(self) -> None:
        """Close the running loop's client pools, then the store (off the loop); once."""
        if self.closed:
            return
        self.closed = True
        await self.ledger.clients.pools.aclose()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.writer.close)
        await loop.run_in_executor(self._executor, self.ledger.close)
        self.unit_threads.close()
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AsyncLedger:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def run(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`function(*args, **kwargs)` in a worker thread (the open unit's, inside one)."""
        executor = self._unit.get() or self._executor
        return await settled(executor.submit(function, *args, **kwargs))

    async def write(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """A command, by the writer thread (batched with others), or in the open unit."""
        unit = self._unit.get()
        if unit is not None:
            return await settled(unit.submit(function, *args, **kwargs))
        return await settled(self.writer.submit(function, *args, **kwargs))

    # Commands: every one of Ledger's, the same name and arguments, awaited

    begin_run = _command(Ledger.begin_run)
    complete_run = _command(Ledger.complete_run)
    resume_run = _command(Ledger.resume_run)
    open_state = _command(Ledger.open_state)
    mark_state_pending = _command(Ledger.mark_state_pending)
    mark_pending = _command(Ledger.mark_pending)
    complete_state = _command(Ledger.complete_state)
    fail_state = _command(Ledger.fail_state)
    begin_operation = _command(Ledger.begin_operation)
    mark_operation_pending = _command(Ledger.mark_operation_pending)
    complete_operation = _command(Ledger.complete_operation)
    fail_operation = _command(Ledger.fail_operation)
    record_call = _command(Ledger.record_call)
    store_bytes = _command(Ledger.store_bytes)
    payload = _command(Ledger.payload, writes=False)
    create_batch = _command(Ledger.create_batch)
    add_batch_member = _command(Ledger.add_batch_member)
    link_batch = _command(Ledger.link_batch)
    complete_batch = _command(Ledger.complete_batch)
    fail_batch = _command(Ledger.fail_batch)
    retry_batch = _command(Ledger.retry_batch)

    # Reads and the landscape, off the loop too

    load = _command(Ledger.load, writes=False)
    recorded_calls = _command(Ledger.recorded_calls, writes=False)
    log_position = _command(Ledger.log_position, writes=False)
    call_parent_id = _command(Ledger.call_parent_id, writes=False)
    catch_up = _command(Ledger.catch_up, writes=False)
    landscape_position = _command(Ledger.landscape_position, writes=False)
    follow = _command(Ledger.follow, writes=False)
    rebuild = _command(Ledger.rebuild, writes=False)
    verify = _command(Ledger.verify, writes=False)
    explain = _command(Ledger.explain, writes=False)
    skip_event = _command(Ledger.skip_event, writes=False)
    state_id = _command(Ledger.state_id, writes=False)  # reads the run: its id scheme
    prove = _command(Ledger.prove, writes=False)
    erase = _command(Ledger.erase, writes=False)

    @property
    def retention(self) -> timedelta:
        """The minimum retention `erase` keeps unless overridden."""
        return self.ledger.retention

    @property
    def landscape_engine(self) -> Engine:
        """The landscape's SQLAlchemy Engine (docs/projections.md); its queries block: run
        them with `await ledger.run(...)` or an async driver of your own."""
        return self.ledger.landscape_engine

    async def export_rows(self, run_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Every landscape row of a run as (table, row), after catching up."""
        return await self.run(lambda: list(self.ledger.export_rows(run_id)))

    # Units of work

    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """Record the commands of this block in one transaction: all of them, or none."""
        return self._unit_of_work()

    @asynccontextmanager
    async def _unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        if self._unit.get() is not None:
            raise UnitNesting()
        thread = self.unit_threads.take()
        block = self.ledger.unit_of_work()
        exit_: Future[Any] | None = None
        try:
            unit = await settled(thread.submit(block.__enter__))
            token = self._unit.set(thread)
            try:
                yield unit
            except BaseException as error:
                self._unit.reset(token)
                exit_ = thread.submit(block.__exit__, type(error), error, error.__traceback__)
                await settled(exit_, quiet=True)
                raise
            self._unit.reset(token)
            exit_ = thread.submit(block.__exit__, None, None, None)
            await settled(exit_)
        finally:
            exited = exit_ is not None and exit_.done() and not exit_.cancelled()
            self.unit_threads.give_back(thread, unit_exited=exited)

    # Audited and replaying clients (calls/clients.py), sharing the Ledger's pools

    def openai(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        call_type: str = "llm",
        **openai_kwargs: Any,
    ) -> openai_sdk.AsyncOpenAI:
        """A real openai.AsyncOpenAI; each HTTP exchange is an llm call under the parent."""
        return self.ledger.clients.async_openai(
            state_id,
            operation_id=operation_id,
            redact_headers=redact_headers,
            transport=transport,
            call_type=call_type,
            lazy=True,
            off_loop=self.write,
            **openai_kwargs,
        )

    async_openai = openai

    def http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        call_type: str = "http",
        **httpx_kwargs: Any,
    ) -> httpx.AsyncClient:
        """An httpx.AsyncClient whose every request is a call under the state (or operation)."""
        return self.ledger.clients.async_http_client(
            state_id,
            operation_id=operation_id,
            redact_headers=redact_headers,
            transport=transport,
            call_type=call_type,
            lazy=True,
            off_loop=self.write,
            **httpx_kwargs,
        )

    async_http_client = http_client

    async def replay_openai(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        **openai_kwargs: Any,
    ) -> openai_sdk.AsyncOpenAI:
        """An openai.AsyncOpenAI answered from the ledger (awaited: it reads the recording)."""

        def build() -> openai_sdk.AsyncOpenAI:
            return self.ledger.async_replay_openai(
                state_id, operation_id=operation_id, redact_headers=redact_headers, **openai_kwargs
            )

        return await self.run(build)

    async def replay_http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        **httpx_kwargs: Any,
    ) -> httpx.AsyncClient:
        def build() -> httpx.AsyncClient:
            return self.ledger.async_replay_http_client(
                state_id, operation_id=operation_id, redact_headers=redact_headers, **httpx_kwargs
            )

        return await self.run(build)


class Opening:
    """What AsyncLedger.open returns: await it, or use it as `async with`."""

    def __init__(self, opened: Callable[[], AsyncLedger]) -> None:
        self.opened = opened
        self.ledger: AsyncLedger | None = None

    def __await__(self) -> Generator[Any, None, AsyncLedger]:
        return asyncio.to_thread(self.opened).__await__()

    async def __aenter__(self) -> AsyncLedger:
        self.ledger = await self
        return self.ledger

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.ledger is not None:
            await self.ledger.aclose()
