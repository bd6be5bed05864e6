"""Audited calls at the price of plain ones, and AsyncLedger's recording throughput, in one run.

    .venv/bin/python bench/async_calls.py [--rows 150] [--async-rows 400] [--concurrency 40]
                                          [--latency-ms 20] [--tokens 1000] [--repeat 3]
                                          [--provider process|inline] [--gc-freeze]
                                          [--only sync]

Against the fake provider with fixed latency (`auditledger fake-provider`, a process of its own,
as a real provider would be; --provider inline serves it from threads of this process, whose
handlers then share the interpreter lock with the pipelines measured), SQLite:
1. sync: N rows through one plain openai.OpenAI, then N audited rows (a row = open_state, one
   chat completion through the per-state client `ledger.openai(state_id)`, complete_state);
2. asyncio: M rows, C at a time, through one plain openai.AsyncOpenAI, then through
   AsyncLedger with a per-state `ledger.openai(state_id)` (the two alternated, run by run,
   each after a full collection, so that none pays for the garbage of the run before); with
   the worst and the p99 lateness of a ticker task's 5 ms sleep in each, and the garbage
   collections meanwhile;
3. recording: bench/record.py's workload, one commit per command (sync Ledger), then the same
   workload as C coroutines on AsyncLedger (group commit): facts/s.
Each figure is the median of --repeat runs; load average at start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
for portion in ("domain", "projections", "adapters"):
    if str(ROOT / portion) not in sys.path:
        sys.path.insert(0, str(ROOT / portion))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
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


@contextmanager
def provider(kind: str, latency_ms: float) -> Iterator[str]:
    """The fake provider's base_url: `auditledger fake-provider` in its own process (killed at
    the end), or served inline from this process's threads."""
    if kind == "inline":
        with serving(FakeOpenAI(), Switches(latency_ms=latency_ms)) as server:
            yield server.base_url
        return
    cli = Path(sys.executable).with_name("auditledger")
    command = [str(cli), "fake-provider", "--port", "0", "--latency-ms", str(latency_ms)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        base = process.stdout.readline().strip()
        if not base.startswith("http"):
            raise SystemExit(f"fake-provider did not start: {base!r}")
        answered(base)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answered(base: str, within: float = 10.0) -> None:
    """Wait until the provider answers a request."""
    deadline = time.monotonic() + within
    while True:
        try:
            httpx.post(f"{base}/chat/completions", json={"model": "m", "messages": PROMPT})
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


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


class Timing(NamedTuple):
    wall: float  # seconds of the rows
    worst: float  # the ticker's worst lateness, seconds
    p99: float  # its p99 lateness, seconds
    full_gcs: int  # full (generation 2) garbage collections during the rows
    gc_pause: float  # the longest collection of any generation meanwhile, seconds


async def with_ticker(work: Callable[[], Awaitable[None]]) -> Timing:
    """The wall time of work, and how late a 5 ms sleep meanwhile woke up (worst, p99);
    with the garbage collections meanwhile: a full one holds the interpreter lock for as
    long as it takes to traverse every object of the process, loop or not."""
    lateness: list[float] = []
    collections: list[tuple[int, float]] = []
    done = False

    async def ticker() -> None:
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            lateness.append(max(0.0, time.perf_counter() - before - TICK))

    def collecting(phase: str, info: dict[str, Any], began: list[float] = [0.0]) -> None:  # noqa: B006
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            collections.append((info["generation"], time.perf_counter() - began[0]))

    ticking = asyncio.create_task(ticker())
    gc.callbacks.append(collecting)
    started = time.perf_counter()
    try:
        await work()
        wall = time.perf_counter() - started
    finally:
        gc.callbacks.remove(collecting)
    done = True
    await ticking
    full = sum(1 for generation, _ in collections if generation == 2)
    longest = max((pause for _, pause in collections), default=0.0)
    return Timing(wall, max(lateness), p99(lateness), full, longest)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def bounded(rows: int, concurrency: int, row: Callable[[int], Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            await row(n)

    await asyncio.gather(*(one(n) for n in range(rows)))


def async_plain(base_url: str, rows: int, concurrency: int) -> Timing:
    async def main() -> Timing:
        client = openai.AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0)

        async def row(n: int) -> None:
            await client.chat.completions.create(model="m", messages=PROMPT)

        try:
            return await with_ticker(lambda: bounded(rows, concurrency, row))
        finally:
            await client.close()

    return asyncio.run(main())


def async_audited(base_url: str, rows: int, concurrency: int) -> Timing:
    async def main(url: str) -> Timing:
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
    parser.add_argument("--provider", choices=("process", "inline"), default="process")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after the warm-up (both pipelines): what an application that freezes "
        "its start-up heap sees; full collections then skip the imported modules' objects",
    )
    parser.add_argument("--only", choices=("sync",), help="part 1 alone")
    args = parser.parse_args()
    print(f"load at start: {os.getloadavg()}  cores: {os.cpu_count()}")
    print(
        f"rows={args.rows} async_rows={args.async_rows} concurrency={args.concurrency} "
        f"latency={args.latency_ms} ms tokens={args.tokens} (median of {args.repeat}) "
        f"provider={args.provider}{' gc-freeze' if args.gc_freeze else ''}"
    )
    with provider(args.provider, args.latency_ms) as base:
        sync_plain(base, 5)  # warm the SDK's imports and the server's threads
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
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

        def plain_async() -> Timing:
            return async_plain(base, args.async_rows, args.concurrency)

        def audited_async() -> Timing:
            return async_audited(base, args.async_rows, args.concurrency)

        a_plain_runs, a_audited_runs = [], []
        for _ in range(args.repeat):  # alternated, so both see the same moments of load
            gc.collect()  # each run starts clean: no run pays for the garbage of the one before
            a_plain_runs.append(plain_async())
            gc.collect()
            a_audited_runs.append(audited_async())
        a_plain, late_plain, p99_plain = (
            statistics.median(run[i] for run in a_plain_runs) for i in range(3)
        )
        a_audited, late_audited, p99_audited = (
            statistics.median(run[i] for run in a_audited_runs) for i in range(3)
        )
        a_ratio = a_audited / a_plain
        print(f"\n2. asyncio rows, {args.concurrency} at a time, SQLite, AsyncLedger")
        print(
            f"  plain openai.AsyncOpenAI {a_plain:6.2f} s   max lateness "
            f"{1000 * late_plain:5.1f} ms"
            f"   runs {fmt([r.wall for r in a_plain_runs])} / "
            f"{fmt([1000 * r.worst for r in a_plain_runs], 'ms')}"
        )
        print(
            f"  audited (AsyncLedger)    {a_audited:6.2f} s   max lateness "
            f"{1000 * late_audited:5.1f} ms   runs {fmt([r.wall for r in a_audited_runs])} / "
            f"{fmt([1000 * r.worst for r in a_audited_runs], 'ms')}"
        )
        for name, runs, median in (
            ("plain  ", a_plain_runs, p99_plain),
            ("audited", a_audited_runs, p99_audited),
        ):
            late = fmt([1000 * r.p99 for r in runs], "ms")
            print(f"  p99 lateness, {name}   {1000 * median:5.1f} ms   runs {late}")
        for name, runs in (("plain  ", a_plain_runs), ("audited", a_audited_runs)):
            fulls = " / ".join(str(run.full_gcs) for run in runs)
            pauses = fmt([1000 * run.gc_pause for run in runs], "ms")
            print(f"  full GCs, {name}  runs {fulls}   longest GC pause runs {pauses}")
        print(f"  [{verdict(a_ratio <= 1.15)}] audited / plain <= 1.15x: {a_ratio:.2f}x")
        extra = 1000 * (late_audited - late_plain)
        print(f"  [{verdict(extra <= 20)}] lateness within 20 ms of plain: {extra:+.1f} ms")
        print(f"  [note] p99 lateness, audited - plain: {1000 * (p99_audited - p99_plain):+.1f} ms")
        print(f"  load after part 2: {os.getloadavg()}")

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
