"""`settled(work)`: await, on an event loop, work that runs in a thread (a concurrent Future).

Invariants kept here:
- cancelled while waiting, the work is dropped if it has not started, else waited for until
  it ends before the CancelledError goes on (it lands whole or not at all);
- results reach their loop in bursts: the first result of a burst wakes the loop once (one
  `call_soon_threadsafe`), the ones that arrive before the loop has taken it ride along, so
  a writer answering a batch of N commands wakes the loop once, not N times (each wake-up
  was a hand-over of the interpreter lock between the writer and the loop).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from concurrent.futures import Future
from contextlib import suppress
from typing import Any, TypeVar

R = TypeVar("R")


class _Inbox:
    """A loop's results of thread work, handed over in bursts."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._arrived: list[tuple[Future[Any], asyncio.Future[Any]]] = []

    def watch(self, work: Future[R]) -> asyncio.Future[R]:
        """An asyncio future of this loop with work's outcome once it is done."""
        waiter: asyncio.Future[R] = self.loop.create_future()
        work.add_done_callback(lambda done: self._arrive(done, waiter))
        return waiter

    def _arrive(self, work: Future[Any], waiter: asyncio.Future[Any]) -> None:
        with self._lock:
            first = not self._arrived
            self._arrived.append((work, waiter))
        if first:
            with suppress(RuntimeError):  # the loop is closed: nobody waits any more
                self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            arrived, self._arrived = self._arrived, []
        for work, waiter in arrived:
            if waiter.done():  # its awaiter was cancelled
                continue
            if work.cancelled():
                waiter.cancel()
            elif (error := work.exception()) is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(work.result())


_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = weakref.WeakKeyDictionary()
_inboxes_lock = threading.Lock()


def _inbox() -> _Inbox:
    loop = asyncio.get_running_loop()
    with _inboxes_lock:
        inbox = _inboxes.get(loop)
        if inbox is None:
            inbox = _inboxes[loop] = _Inbox(loop)
        return inbox


async def settled(work: Future[R], *, quiet: bool = False) -> R:
    """The result of work in a thread. Cancelled while waiting: drop it if it has not
    started, else wait until it ends (it lands whole or not at all) and then re-raise.
    quiet: the work's own exception is not raised (an unwinding unit's exit)."""
    waiter = _inbox().watch(work)
    try:
        return await waiter
    except asyncio.CancelledError:
        if not work.cancel():
            await _until_done(work)
        raise
    except BaseException:
        if quiet:
            return None  # type: ignore[return-value]
        raise


async def _until_done(work: Future[Any]) -> None:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    work.add_done_callback(lambda _: loop.call_soon_threadsafe(done.set))
    while not work.done():
        try:
            await asyncio.shield(done.wait())
        except asyncio.CancelledError:
            continue
