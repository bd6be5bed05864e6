"""settled(): thread work awaited on a loop; a burst of results wakes the loop once."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

import pytest

from auditledger.adapters.writing.awaiting import settled


def test_a_burst_of_results_from_a_thread_wakes_the_loop_once() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        wakes = []
        threadsafe = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any) -> Any:
            wakes.append(threading.current_thread().name)
            return threadsafe(callback, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        works: list[Future[int]] = [Future() for _ in range(50)]
        waiting = [asyncio.ensure_future(settled(work)) for work in works]
        await asyncio.sleep(0)  # every waiter is waiting
        answering = threading.Thread(
            target=lambda: [work.set_result(n) for n, work in enumerate(works)], name="writer"
        )
        answering.start()
        answering.join()  # the loop is held while the whole burst arrives
        results = await asyncio.gather(*waiting)
        assert wakes == ["writer"]
        return results

    assert asyncio.run(main()) == list(range(50))


def test_the_works_error_is_raised_and_a_cancelled_waiter_drops_work_not_started() -> None:
    async def main() -> None:
        failing: Future[int] = Future()
        failing.set_exception(LookupError("refused"))
        with pytest.raises(LookupError, match="refused"):
            await settled(failing)
        assert await settled(failing, quiet=True) is None

        queued: Future[int] = Future()
        task = asyncio.ensure_future(settled(queued))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert queued.cancelled()

    asyncio.run(main())


def test_a_cancelled_waiter_waits_for_work_already_running_before_it_raises() -> None:
    async def main() -> None:
        running: Future[int] = Future()
        assert running.set_running_or_notify_cancel()
        task = asyncio.ensure_future(settled(running))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done(), "the cancellation arrived before the running work ended"
        threading.Timer(0.01, running.set_result, (7,)).start()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert running.result() == 7

    asyncio.run(main())
