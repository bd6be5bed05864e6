"""AsyncLedger: the Ledger's commands as coroutines that never block the event loop, share
commits between concurrent coroutines, and land whole or not at all when cancelled."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from auditledger.adapters import AsyncLedger, Ledger
from auditledger.adapters.calls.async_batch_runner import AsyncOpenAIBatchRunner
from auditledger.adapters.calls.batch_runner import BatchPending
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.adapters.demo.provider_server import ProviderServer, Switches, serving
from auditledger.adapters.writing.writer import EventWriter
from auditledger.domain.errors import (
    InvalidArgument,
    ParentClosed,
    UnitNesting,
    UnknownRun,
    UnknownState,
)
from auditledger.domain.node_state import NodeState

PROMPT = [{"role": "user", "content": "hello"}]
NOT_COMMANDS = {
    "open",
    "close",
    "url",
    "group_commit",
    "unit_of_work",
    "landscape_engine",  # a property: the Engine itself
    "retention",  # a property
    # clients: built, not awaited (replay ones are awaited: they read the recording)
    "http_client",
    "async_http_client",
    "audited_transport",
    "openai",
    "async_openai",
    "openai_transport",
    "replay_http_client",
    "async_replay_http_client",
    "replay_openai",
    "async_replay_openai",
    "replay_async_openai",
}


@pytest.fixture
def server() -> Iterator[ProviderServer]:
    with serving(FakeOpenAI(batch_polls=2)) as served:
        yield served


def run(body: Callable[[AsyncLedger], Awaitable[Any]], url: str, **options: Any) -> Any:
    async def main() -> Any:
        async with AsyncLedger.open(url, **options) as ledger:
            return await body(ledger)

    return asyncio.run(main())


async def new_state(ledger: AsyncLedger, token: str = "t", run_id: str | None = None) -> str:
    run_id = run_id or await ledger.begin_run(config={})
    return await ledger.open_state(run_id=run_id, token_id=token, node_id="n", step_index=0)


def test_every_ledger_command_is_a_coroutine_of_the_same_name_and_arguments() -> None:
    public = {
        name
        for name, member in inspect.getmembers(Ledger)
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }
    for name in sorted(public - NOT_COMMANDS):
        mine = getattr(AsyncLedger, name, None)
        assert mine is not None, f"AsyncLedger has no {name}"
        assert inspect.iscoroutinefunction(mine), f"AsyncLedger.{name} is not a coroutine"
        theirs = inspect.signature(getattr(Ledger, name))
        if name != "export_rows":
            assert inspect.signature(mine).parameters == theirs.parameters, name


def test_a_pipeline_of_states_calls_and_a_batch_lands_in_the_landscape(store_url: str) -> None:
    async def body(ledger: AsyncLedger) -> None:
        run_id = await ledger.begin_run(config={"async": True})
        states = await asyncio.gather(*(new_state(ledger, f"tok-{n}", run_id) for n in range(8)))
        await asyncio.gather(
            *(ledger.record_call(s, call_type="llm", request={"s": s}, response={}) for s in states)
        )
        batch = await ledger.create_batch(run_id, "n")
        for n in range(8):
            assert await ledger.add_batch_member(batch, f"tok-{n}") == n
        await ledger.link_batch(batch, states[-1])
        await ledger.complete_batch(batch)
        await asyncio.gather(*(ledger.complete_state(s, output={"ok": s}) for s in states))
        await ledger.complete_run(run_id)
        assert await ledger.catch_up() > 0
        explained = await ledger.explain(state_id=states[0])
        assert explained is not None
        assert (await ledger.verify()).passed
        assert [c.call_index for c in await ledger.recorded_calls(states[0])] == [0]
        digest = await ledger.store_bytes(b"raw")
        assert await ledger.payload(digest) == b"raw"
        assert await ledger.state_id(run_id=run_id, token_id="tok-0", node_id="n") == states[0]

    run(body, store_url)


def test_refused_commands_raise_the_same_typed_errors_and_write_nothing(store_url: str) -> None:
    async def body(ledger: AsyncLedger) -> None:
        state = await new_state(ledger)
        await ledger.complete_state(state)
        before = await ledger.log_position()
        with pytest.raises(UnknownState):
            await ledger.complete_state("00000000-0000-0000-0000-000000000000")
        with pytest.raises(UnknownRun):
            await ledger.open_state(run_id="not-a-run", token_id="x", node_id="n", step_index=0)
        with pytest.raises(ParentClosed):
            await ledger.record_call(state, call_type="llm", request={})
        with pytest.raises(InvalidArgument):
            await ledger.store_bytes("not bytes")  # type: ignore[arg-type]
        assert await ledger.log_position() == before

    run(body, store_url)


def test_a_unit_of_work_commits_all_of_its_commands_or_none(store_url: str) -> None:
    async def body(ledger: AsyncLedger) -> None:
        run_id = await ledger.begin_run(config={})
        async with ledger.unit_of_work():
            kept = await new_state(ledger, "kept", run_id)
            assert await ledger.record_call(kept, call_type="llm", request={}) == 0
            await ledger.complete_state(kept)
        before = await ledger.log_position()
        with pytest.raises(RuntimeError):
            async with ledger.unit_of_work():
                await new_state(ledger, "dropped", run_id)
                with pytest.raises(UnitNesting):
                    async with ledger.unit_of_work():
                        pass
                raise RuntimeError("the block failed")
        assert await ledger.log_position() == before
        assert (await ledger.load(NodeState, kept)).status == "completed"
        with pytest.raises(UnknownState):
            dropped = await ledger.state_id(run_id=run_id, token_id="dropped", node_id="n")
            await ledger.load(NodeState, dropped)

    run(body, store_url)


def test_a_cancelled_unit_writes_nothing_and_the_ledger_keeps_working(store_url: str) -> None:
    async def body(ledger: AsyncLedger) -> None:
        run_id = await ledger.begin_run(config={})
        before = await ledger.log_position()
        started = asyncio.Event()

        async def unit() -> None:
            async with ledger.unit_of_work():
                await new_state(ledger, "in-unit", run_id)
                started.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(unit())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await ledger.log_position() == before
        await new_state(ledger, "after", run_id)

    run(body, store_url)


def test_units_reuse_the_thread_of_a_unit_that_has_ended_failed_or_cancelled(
    store_url: str,
) -> None:
    async def body(ledger: AsyncLedger) -> None:
        run_id = await ledger.begin_run(config={})
        threads = []

        async def unit(token: str, *, fail: bool = False, hang: bool = False) -> None:
            async with ledger.unit_of_work():
                threads.append(await ledger.run(threading.get_ident))
                await new_state(ledger, token, run_id)
                if fail:
                    raise RuntimeError("the block failed")
                if hang:
                    await asyncio.sleep(10)

        await unit("first")
        with pytest.raises(RuntimeError):
            await unit("failed", fail=True)
        task = asyncio.create_task(unit("cancelled", hang=True))
        while len(threads) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await unit("last")
        assert len(set(threads)) == 1, "a thread was started for a unit while one was idle"
        position = await ledger.log_position()
        await new_state(ledger, "outside", run_id)  # the writer, not a left-over unit
        assert await ledger.log_position() > position
        for token in ("first", "last", "outside"):
            state_id = await ledger.state_id(run_id=run_id, token_id=token, node_id="n")
            assert (await ledger.load(NodeState, state_id)).status == "open"
        for token in ("failed", "cancelled"):
            state_id = await ledger.state_id(run_id=run_id, token_id=token, node_id="n")
            with pytest.raises(UnknownState):
                await ledger.load(NodeState, state_id)

    run(body, store_url)


def test_a_cancelled_command_landed_whole_or_not_at_all_when_the_cancel_arrives(
    store_url: str,
) -> None:
    async def body(ledger: AsyncLedger) -> None:
        state = await new_state(ledger)
        outcomes = set()
        for attempt in range(24):
            count = len(await ledger.recorded_calls(state))
            request = {"attempt": attempt, "text": "x" * 5000}
            task = asyncio.create_task(
                ledger.record_call(state, call_type="llm", request=request, response={"r": 1})
            )
            await asyncio.sleep(0.0005 * (attempt % 8))
            task.cancel()
            try:
                await task
                landed_as_seen = True
            except asyncio.CancelledError:
                landed_as_seen = None
            calls = await ledger.recorded_calls(state)
            assert len(calls) in (count, count + 1)
            if landed_as_seen:
                assert len(calls) == count + 1
            if len(calls) == count + 1:
                assert calls[-1].request == request and calls[-1].response == {"r": 1}
            outcomes.add(len(calls) - count)
            await asyncio.sleep(0.02)  # nothing lands after the cancellation was raised
            assert len(await ledger.recorded_calls(state)) == len(calls)
        assert await ledger.record_call(state, call_type="llm", request={}) >= 0
        assert outcomes <= {0, 1}

    run(body, store_url)


class SlowLedger(Ledger):
    """A Ledger whose record_call blocks its thread for 80 ms, as a slow disk would."""

    def record_call(self, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        time.sleep(0.08)
        return super().record_call(*args, **kwargs)


async def max_lateness(work: Awaitable[Any], tick: float = 0.005) -> float:
    """The worst lateness of a 5 ms sleep while `work` runs."""
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            started = time.perf_counter()
            await asyncio.sleep(tick)
            worst = max(worst, time.perf_counter() - started - tick)

    ticking = asyncio.create_task(ticker())
    await work
    done = True
    await ticking
    return worst


def test_a_slow_store_never_blocks_the_event_loop(tmp_path: object) -> None:
    async def main() -> float:
        ledger = AsyncLedger(SlowLedger.open(f"sqlite:///{tmp_path}/ledger", group_commit=True))
        async with ledger:
            state = await new_state(ledger)
            work = asyncio.gather(
                *(ledger.record_call(state, call_type="llm", request={"n": n}) for n in range(6))
            )
            return await max_lateness(work)

    assert asyncio.run(main()) < 0.04


def test_forty_coroutines_recording_keep_the_loop_responsive(tmp_path: object) -> None:
    async def body(ledger: AsyncLedger) -> float:
        run_id = await ledger.begin_run(config={})

        async def row(n: int) -> None:
            state = await new_state(ledger, f"row-{n}", run_id)
            for k in range(3):
                await ledger.record_call(state, call_type="llm", request={"k": k}, response={})
            await ledger.complete_state(state)

        return await max_lateness(asyncio.gather(*(row(n) for n in range(40))))

    assert run(body, f"sqlite:///{tmp_path}/ledger") < 0.1


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_concurrent_commands_share_commits(
    kind: str, tmp_path: object, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(memory:// commits cost nothing and finish before a second writer queues.)"""
    commits = []
    write = EventWriter.write

    def counted(self: EventWriter, *args: Any, **kwargs: Any) -> None:
        commits.append(1)
        write(self, *args, **kwargs)

    monkeypatch.setattr(EventWriter, "write", counted)

    async def body(ledger: AsyncLedger) -> None:
        run_id = await ledger.begin_run(config={})
        states = await asyncio.gather(*(new_state(ledger, f"t{n}", run_id) for n in range(50)))
        commits.clear()
        await asyncio.gather(*(ledger.complete_state(s) for s in states))
        assert len(commits) <= 25, f"50 concurrent commands took {len(commits)} commits"
        for state in states:
            assert (await ledger.load(NodeState, state)).status == "completed"

    url = (
        f"sqlite:///{tmp_path}/ledger"
        if kind == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    run(body, url)


def test_an_audited_async_openai_records_each_row_and_checks_its_parent_off_the_loop(
    store_url: str, server: ProviderServer
) -> None:
    import openai

    async def body(ledger: AsyncLedger) -> None:
        run_id = await ledger.begin_run(config={})

        async def row(n: int) -> str:
            state = await new_state(ledger, f"row-{n}", run_id)
            client = ledger.openai(state, api_key="k", base_url=server.base_url)
            answer = await client.chat.completions.create(model="m", messages=PROMPT)
            await client.close()
            await ledger.complete_state(state, output=answer.choices[0].message.content)
            return state

        states = await asyncio.gather(*(row(n) for n in range(10)))
        for state in states:
            [call] = await ledger.recorded_calls(state)
            assert call.call_type == "llm" and call.status == "success"
        made_up = ledger.openai("00000000-0000-0000-0000-000000000001", api_key="k",
                                base_url=server.base_url, max_retries=0)  # fmt: skip
        served = server.connections
        with pytest.raises(openai.APIConnectionError) as wrapped:  # the SDK wraps it
            await made_up.chat.completions.create(model="m", messages=PROMPT)
        assert isinstance(wrapped.value.__cause__, UnknownState)
        closed = ledger.http_client(states[0])
        with pytest.raises(ParentClosed):
            await closed.get(f"{server.origin}/json/x")
        assert server.connections == served, "a request left for a parent that was refused"
        replayed = await ledger.replay_openai(states[0], api_key="k", base_url=server.base_url)
        again = await replayed.chat.completions.create(model="m", messages=PROMPT)
        assert again.choices[0].message.content

    run(body, store_url)


def test_aclose_closes_the_loops_shared_pools(tmp_path: object, server: ProviderServer) -> None:
    async def main() -> AsyncLedger:
        async with AsyncLedger.open(f"sqlite:///{tmp_path}/ledger") as ledger:
            client = ledger.http_client(await new_state(ledger))
            await client.post(f"{server.origin}/json/x", json={})
            assert ledger.ledger.clients.pools.count == 1
        return ledger

    ledger = asyncio.run(main())
    assert ledger.ledger.clients.pools.count == 0
    asyncio.run(ledger.aclose())  # a second close is a no-op

    async def after_close() -> None:
        with pytest.raises(InvalidArgument, match="closed"):
            await ledger.complete_state("00000000-0000-0000-0000-000000000000")

    asyncio.run(after_close())


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_async_batch_runner_submits_polls_and_settles_against_the_fake_provider(
    kind: str, server: ProviderServer, tmp_path: object, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/ledger"
        if kind == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    tokens = ["a", "b", "c"]

    async def body(ledger: AsyncLedger) -> None:
        import openai

        run_id = await ledger.begin_run(config={})
        batch = await ledger.create_batch(run_id, "summarise")
        for token in tokens:
            await ledger.add_batch_member(batch, token)
        state = await ledger.open_state(
            run_id=run_id, token_id="flush", node_id="summarise", step_index=1
        )
        client = openai.AsyncOpenAI(api_key="k", base_url=server.base_url, max_retries=0)
        runner = AsyncOpenAIBatchRunner(ledger, client)
        requests = {t: {"model": "m", "messages": [{"role": "user", "content": t}]} for t in tokens}
        handle = await runner.submit(batch, state, requests)
        assert (await ledger.load(NodeState, state)).status == "pending"
        with pytest.raises(BatchPending):
            await runner.poll(handle)
        outcome = await runner.poll(handle)
        assert outcome.status == "completed" and sorted(outcome.results) == tokens
        assert (await ledger.load(NodeState, state)).status == "completed"
        assert await runner.recover(batch) == handle
        recorded = await ledger.recorded_calls(state)
        assert [c.call_index for c in recorded] == list(range(len(recorded)))
        assert [c.request["token_id"] for c in recorded if c.call_type == "llm"] == tokens

    run(body, url)


def test_the_async_batch_runner_records_a_failed_submit_and_fails_state_and_batch(
    tmp_path: object,
) -> None:
    async def body(ledger: AsyncLedger) -> None:
        import openai

        with serving(FakeOpenAI(), Switches(fail_rate=1.0)) as failing:
            run_id = await ledger.begin_run(config={})
            batch = await ledger.create_batch(run_id, "summarise")
            await ledger.add_batch_member(batch, "a")
            state = await ledger.open_state(
                run_id=run_id, token_id="flush", node_id="summarise", step_index=1
            )
            client = openai.AsyncOpenAI(api_key="k", base_url=failing.base_url, max_retries=0)
            runner = AsyncOpenAIBatchRunner(ledger, client)
            with pytest.raises(openai.APIStatusError):
                await runner.submit(batch, state, {"a": {"model": "m", "messages": []}})
        assert (await ledger.load(NodeState, state)).status == "failed"
        [call] = await ledger.recorded_calls(state)
        assert call.status == "error"

    run(body, f"sqlite:///{tmp_path}/ledger")


def test_calls_made_inside_an_async_unit_are_recorded_in_the_unit(
    tmp_path: object, server: ProviderServer
) -> None:
    async def body(ledger: AsyncLedger) -> None:
        run_id = await ledger.begin_run(config={})
        async with ledger.unit_of_work():
            kept = await new_state(ledger, "kept", run_id)
            client = ledger.http_client(kept)
            await client.post(f"{server.origin}/json/kept", json={})
        assert len(await ledger.recorded_calls(kept)) == 1
        before = await ledger.log_position()
        with pytest.raises(RuntimeError):
            async with ledger.unit_of_work():
                dropped = await new_state(ledger, "dropped", run_id)
                client = ledger.http_client(dropped)
                await client.post(f"{server.origin}/json/dropped", json={})
                raise RuntimeError("the row failed")
        assert await ledger.log_position() == before

    run(body, f"sqlite:///{tmp_path}/ledger")


def test_the_fake_provider_answers_forty_clients_connecting_at_once(
    server: ProviderServer,
) -> None:
    """(With the default listen backlog of 5, some of these connections were reset.)"""
    import openai

    async def main() -> int:
        client = openai.AsyncOpenAI(api_key="k", base_url=server.base_url, max_retries=0)
        gate = asyncio.Semaphore(40)

        async def one() -> None:
            async with gate:
                await client.chat.completions.create(model="m", messages=PROMPT)

        await asyncio.gather(*(one() for _ in range(80)))
        await client.close()
        return server.connections

    assert asyncio.run(main()) >= 40
