"""Audited calls at the price of plain ones, and AsyncLedger's recording throughput, in one run.

    .venv/bin/python bench/async_calls.py [--rows 150] [--async-rows 400] [--concurrency 40]
                                          [--latency-ms 20] [--tokens 1000] [--repeat 3]
                                          [--only sync]

Against the fake provider (provider_server.serving, in this process, fixed latency), SQLite:
1. sync: N rows through one plain openai.OpenAI, then N audited rows (a row = open_state, one
   chat completion through the per-state client `ledger.openai(state_id)`, complete_state);
2. asyncio: M rows, C at a time, through one plain openai.AsyncOpenAI, then through
   AsyncLedger with a per-state `ledger.openai(state_id)`; with the worst lateness of a ticker
   task's 5 ms sleep in each;
3. recording: bench/record.py's workload, one commit per command (sync Ledger), then the same
   workload as C coroutines on AsyncLedger (group commit): facts/s.
Each figure is the median of --repeat runs; load average at start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for portion in ("domain", "projections", "adapters"):
    if str(ROOT / portion) not in sys.path:
        sys.path.insert(0, str(ROOT / portion))
sys.path.insert(0, str(ROOT / "bench"))

import openai  # noqa: E402
import record  # noqa: E402

from auditledger.adapters import AsyncLedger, Ledger  # noqa: E402
from auditledger.adapters.demo.fake_provider import FakeOpenAI  # noqa: E402
from auditledger.adapters.demo.provider_server import Switches, serving  # noqa: E402

PROMPT = [{"role": "user", "content": "classify this row"}]
TICK = 0.005


@contextmanager
def sqlite_url() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="auditledger-async-bench-")
    try:
        yield f"sqlite:///{directory}/ledger"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def median_of(repeat: int, measure: Callable[[], Any]) -> tuple[Any, list[Any]]:
    runs = [measure() for _ in range(repeat)]
    return statistics.median(runs), runs


# 1. sync rows


def sync_plain(base_url: str, rows: int) -> float:
    client = openai.OpenAI(api_key="k", base_url=base_url, max_retries=0)
    started = time.perf_counter()
    for _ in range(rows):
        client.chat.completions.create(model="m", messages=PROMPT)
    wall = time.perf_counter() - started
    client.close()
    return wall


def sync_audited(base_url: str, rows: int, *, unit_per_row: bool = False) -> float:
    with sqlite_url() as url, Ledger.open(url) as ledger:
        run_id = ledger.begin_run(config={"bench": "async_calls"})

        def row(n: int) -> None:
            state = ledger.open_state(run_id=run_id, token_id=f"r{n}", node_id="n", step_index=0)
            client = ledger.openai(state, api_key="k", base_url=base_url, max_retries=0)
            answer = client.chat.completions.create(model="m", messages=PROMPT)
            client.close()
            ledger.complete_state(state, output={"label": answer.choices[0].message.content})

        started = time.perf_counter()
        for n in range(rows):
            if unit_per_row:
                with ledger.unit_of_work():
                    row(n)
            else:
                row(n)
        return time.perf_counter() - started


def commit_ms(repeat: int = 50) -> float:
    """What one small commit costs on this disk now (SQLite, a state completed), ms."""
    with sqlite_url() as url, Ledger.open(url) as ledger:
        run_id = ledger.begin_run(config={})
        states = [
            ledger.open_state(run_id=run_id, token_id=f"c{n}", node_id="n", step_index=0)
            for n in range(repeat)
        ]
        started = time.perf_counter()
        for state in states:
            ledger.complete_state(state)
        return 1000 * (time.perf_counter() - started) / repeat


# 2. asyncio rows


async def with_ticker(work: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(wall seconds of work, worst lateness of a 5 ms sleep meanwhile, seconds)."""
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            worst = max(worst, time.perf_counter() - before - TICK)

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    await work()
    wall = time.perf_counter() - started
    done = True
    await ticking
    return wall, worst


async def bounded(rows: int, concurrency: int, row: Callable[[int], Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            await row(n)

    await asyncio.gather(*(one(n) for n in range(rows)))


def async_plain(base_url: str, rows: int, concurrency: int) -> tuple[float, float]:
    async def main() -> tuple[float, float]:
        client = openai.AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0)

        async def row(n: int) -> None:
            await client.chat.completions.create(model="m", messages=PROMPT)

        try:
            return await with_ticker(lambda: bounded(rows, concurrency, row))
        finally:
            await client.close()

    return asyncio.run(main())


def async_audited(base_url: str, rows: int, concurrency: int) -> tuple[float, float]:
    async def main(url: str) -> tuple[float, float]:
        async with AsyncLedger.open(url) as ledger:
            run_id = await ledger.begin_run(config={"bench": "async_calls"})

            async def row(n: int) -> None:
                state = await ledger.open_state(
                    run_id=run_id, token_id=f"r{n}", node_id="n", step_index=0
                )
                client = ledger.openai(state, api_key="k", base_url=base_url, max_retries=0)
                answer = await client.chat.completions.create(model="m", messages=PROMPT)
                await client.close()
                label = answer.choices[0].message.content
                await ledger.complete_state(state, output={"label": label})

            return await with_ticker(lambda: bounded(rows, concurrency, row))

    with sqlite_url() as url:
        return asyncio.run(main(url))


# 3. recording throughput: bench/record.py's workload


def recording_sync(tokens: int) -> float:
    with sqlite_url() as url, Ledger.open(url) as ledger:
        started = time.perf_counter()
        facts, _ = record.run_workload(ledger, "commit", tokens)
        return facts / (time.perf_counter() - started)


async def record_group_async(ledger: AsyncLedger, run_id: str, group: int) -> int:
    """record.record_group's facts (ten tokens and their batch), awaited."""
    facts = 0
    states = []
    for t in range(group * record.GROUP, (group + 1) * record.GROUP):
        token = f"tok-{t}"
        state = await ledger.open_state(
            run_id=run_id, token_id=token, node_id=record.node_of(t), step_index=0
        )
        facts += 1
        for k in range(record.CALLS):
            request = {"model": "bench", "token": token, "k": k, "prompt": "p" * 240}
            response = {"token": token, "k": k, "choices": [{"text": "r" * 540}]}
            await ledger.record_call(
                state, call_type="llm", request=request, response=response, latency_ms=12.5
            )
            facts += 1
        states.append(state)
    batch = await ledger.create_batch(run_id, record.NODES[-1])
    for t in range(group * record.GROUP, (group + 1) * record.GROUP):
        await ledger.add_batch_member(batch, f"tok-{t}")
    await ledger.link_batch(batch, states[-1])
    await ledger.complete_batch(batch)
    facts += 1
    for state in states:
        await ledger.complete_state(state, output={"label": "ok"} if state == states[-1] else None)
    return facts


def recording_async(tokens: int, concurrency: int) -> float:
    async def main(url: str) -> float:
        async with AsyncLedger.open(url) as ledger:
            run_id = await ledger.begin_run(config={"bench": "record", "tokens": tokens})
            groups = list(range(tokens // record.GROUP))

            async def worker(i: int) -> int:
                facts = 0
                for g in groups[i::concurrency]:
                    facts += await record_group_async(ledger, run_id, g)
                return facts

            started = time.perf_counter()
            facts = sum(await asyncio.gather(*(worker(i) for i in range(concurrency))))
            return facts / (time.perf_counter() - started)

    with sqlite_url() as url:
        return asyncio.run(main(url))


def verdict(ok: bool) -> str:
    return "hit" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=150)
    parser.add_argument("--async-rows", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("sync",), help="part 1 alone")
    args = parser.parse_args()
    print(f"load at start: {os.getloadavg()}  cores: {os.cpu_count()}")
    print(
        f"rows={args.rows} async_rows={args.async_rows} concurrency={args.concurrency} "
        f"latency={args.latency_ms} ms tokens={args.tokens} (median of {args.repeat})"
    )
    with serving(FakeOpenAI(), Switches(latency_ms=args.latency_ms)) as server:
        base = server.base_url
        sync_plain(base, 5)  # warm the SDK's imports and the server's threads
        plain, plain_runs = median_of(args.repeat, lambda: sync_plain(base, args.rows))
        audited, audited_runs = median_of(args.repeat, lambda: sync_audited(base, args.rows))
        unit, unit_runs = median_of(
            args.repeat, lambda: sync_audited(base, args.rows, unit_per_row=True)
        )
        ratio = audited / plain
        print("\n1. sync rows, SQLite, a per-state audited client")
        print(f"  plain openai.OpenAI      {plain:6.2f} s   runs {fmt(plain_runs)}")
        print(f"  audited (Ledger)         {audited:6.2f} s   runs {fmt(audited_runs)}")
        print(f"  audited, a unit per row  {unit:6.2f} s   runs {fmt(unit_runs)}")
        print(f"  [{verdict(ratio <= 1.15)}] audited / plain <= 1.15x: {ratio:.2f}x")
        print(f"  [note] a unit of work per row / plain: {unit / plain:.2f}x")
        per_row = 1000 * (audited - plain) / args.rows
        print(
            f"  [note] audit cost per row {per_row:.1f} ms; one commit costs "
            f"{commit_ms():.1f} ms here (3 per row: open_state, the call, complete_state)"
        )
        if args.only == "sync":
            print(f"\nload at end: {os.getloadavg()}")
            return

        def plain_async() -> tuple[float, float]:
            return async_plain(base, args.async_rows, args.concurrency)

        def audited_async() -> tuple[float, float]:
            return async_audited(base, args.async_rows, args.concurrency)

        a_plain_runs = [plain_async() for _ in range(args.repeat)]
        a_audited_runs = [audited_async() for _ in range(args.repeat)]
        a_plain = statistics.median(w for w, _ in a_plain_runs)
        a_audited = statistics.median(w for w, _ in a_audited_runs)
        late_plain = statistics.median(late for _, late in a_plain_runs)
        late_audited = statistics.median(late for _, late in a_audited_runs)
        a_ratio = a_audited / a_plain
        print(f"\n2. asyncio rows, {args.concurrency} at a time, SQLite, AsyncLedger")
        print(
            f"  plain openai.AsyncOpenAI {a_plain:6.2f} s   max lateness "
            f"{1000 * late_plain:5.1f} ms"
            f"   runs {fmt([w for w, _ in a_plain_runs])} / "
            f"{fmt([1000 * x for _, x in a_plain_runs], 'ms')}"
        )
        print(
            f"  audited (AsyncLedger)    {a_audited:6.2f} s   max lateness "
            f"{1000 * late_audited:5.1f} ms   runs {fmt([w for w, _ in a_audited_runs])} / "
            f"{fmt([1000 * x for _, x in a_audited_runs], 'ms')}"
        )
        print(f"  [{verdict(a_ratio <= 1.15)}] audited / plain <= 1.15x: {a_ratio:.2f}x")
        extra = 1000 * (late_audited - late_plain)
        print(f"  [{verdict(extra <= 20)}] lateness within 20 ms of plain: {extra:+.1f} ms")

    sync_fps, sync_runs = median_of(args.repeat, lambda: recording_sync(args.tokens))
    async_fps, async_runs = median_of(
        args.repeat, lambda: recording_async(args.tokens, args.concurrency)
    )
    gain = async_fps / sync_fps
    print(f"\n3. recording, bench/record.py's workload, {args.tokens} tokens, SQLite")
    print(f"  sync, one commit per command   {sync_fps:7.0f} facts/s   runs {fmt(sync_runs)}")
    print(
        f"  AsyncLedger, {args.concurrency} coroutines      {async_fps:7.0f} facts/s   "
        f"runs {fmt(async_runs)}"
    )
    print(f"  [{verdict(gain >= 3)}] AsyncLedger / sync >= 3x: {gain:.2f}x")
    print(f"\nload at end: {os.getloadavg()}")


def fmt(values: list[float], unit: str = "") -> str:
    return " / ".join(f"{v:,.2f}" if v < 100 else f"{v:,.0f}" for v in values) + unit


if __name__ == "__main__":
    main()
