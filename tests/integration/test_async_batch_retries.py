"""AsyncOpenAIBatchRunner.retry_failed against the fake provider's failing-member switch: the
same semantics as OpenAIBatchRunner.retry_failed (test_batch_outcomes.py), awaited."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest

from auditledger.adapters import AsyncLedger
from auditledger.adapters.calls.async_batch_runner import AsyncOpenAIBatchRunner
from auditledger.adapters.calls.batch_retry import custom_id_for
from auditledger.adapters.calls.batch_runner import BatchHandle, BatchOutcome, BatchPending
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.domain.batch import Batch
from auditledger.domain.errors import InvalidTransition
from auditledger.domain.node_state import NodeState

TOKENS = ["ticket-0", "ticket-1", "ticket-2"]


def bodies(tokens: list[str], model: str = "m") -> dict[str, dict[str, Any]]:
    return {t: {"model": model, "messages": [{"role": "user", "content": t}]} for t in tokens}


def run(store_url: str, body: Callable[[AsyncLedger], Awaitable[None]]) -> None:
    async def main() -> None:
        async with AsyncLedger.open(store_url) as ledger:
            await body(ledger)

    asyncio.run(main())


async def submitted(
    ledger: AsyncLedger, fake: FakeOpenAI, base_url: str, fault: str | None
) -> tuple[str, AsyncOpenAIBatchRunner, BatchHandle]:
    run_id = await ledger.begin_run(config={})
    batch_id = await ledger.create_batch(run_id, "summarise")
    for token in TOKENS:
        await ledger.add_batch_member(batch_id, token)
    state_id = await ledger.open_state(
        run_id=run_id, token_id="flush", node_id="summarise", step_index=1, input={"flush": 0}
    )
    if fault is not None:
        fake.inject(fault)
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=base_url, max_retries=0, timeout=2)
    runner = AsyncOpenAIBatchRunner(ledger, client)
    return run_id, runner, await runner.submit(batch_id, state_id, bodies(TOKENS))


async def settle(runner: AsyncOpenAIBatchRunner, handle: BatchHandle) -> BatchOutcome:
    for _ in range(5):
        try:
            return await runner.poll(handle)
        except BatchPending:
            continue
    raise AssertionError("the fake provider never finished")


def test_retry_failed_submits_only_the_failed_members_as_the_next_attempt(
    store_url: str, fake: FakeOpenAI, base_url: str
) -> None:
    async def body(ledger: AsyncLedger) -> None:
        _, runner, handle = await submitted(ledger, fake, base_url, "error_line")
        first = await settle(runner, handle)
        assert sorted(first.failures) == ["ticket-0"]

        retry = await runner.retry_failed(handle)
        outcome = await settle(runner, retry)

        batch = await ledger.load(Batch, retry.batch_id)
        assert (batch.attempt, str(batch.retry_of_batch_id), batch.members) == (
            1,
            handle.batch_id,
            {"ticket-0": 0},
        )
        state = await ledger.load(NodeState, retry.state_id)
        before = await ledger.load(NodeState, handle.state_id)
        assert (state.token_id, state.step_index, state.attempt, state.input_hash) == (
            before.token_id,
            1,
            1,
            before.input_hash,
        )
        jsonl = (await ledger.payload(retry.input_sha256)).splitlines()
        assert [(json.loads(line)["custom_id"], json.loads(line)["body"]) for line in jsonl] == [
            (custom_id_for(retry.batch_id, 0), bodies(["ticket-0"])["ticket-0"])
        ]
        assert (outcome.status, sorted(outcome.results)) == ("completed", ["ticket-0"])

    run(store_url, body)


def test_retry_failed_takes_the_batch_id_and_a_state_the_engine_opened(
    store_url: str, fake: FakeOpenAI, base_url: str
) -> None:
    async def body(ledger: AsyncLedger) -> None:
        run_id, runner, handle = await submitted(ledger, fake, base_url, "expire")
        await settle(runner, handle)
        own = await ledger.open_state(
            run_id=run_id, token_id="flush-again", node_id="summarise", step_index=1
        )

        retry = await runner.retry_failed(
            handle.batch_id, state_id=own, requests=bodies(TOKENS, model="m2")
        )

        assert retry.state_id == own
        batch = await ledger.load(Batch, retry.batch_id)
        assert batch.members == {t: n for n, t in enumerate(TOKENS)}
        jsonl = (await ledger.payload(retry.input_sha256)).splitlines()
        assert {json.loads(line)["body"]["model"] for line in jsonl} == {"m2"}
        assert (await settle(runner, retry)).status == "completed"

    run(store_url, body)


def test_a_retry_that_fails_again_is_retried_as_attempt_two(
    store_url: str, fake: FakeOpenAI, base_url: str
) -> None:
    async def body(ledger: AsyncLedger) -> None:
        _, runner, handle = await submitted(ledger, fake, base_url, "fail")
        await settle(runner, handle)
        fake.inject("error_line")
        second = await runner.retry_failed(handle)
        assert (await settle(runner, second)).status == "failed"
        third = await runner.retry_failed(second)
        assert (await ledger.load(Batch, third.batch_id)).attempt == 2
        assert (await ledger.load(NodeState, third.state_id)).attempt == 2
        assert (await settle(runner, third)).status == "completed"

    run(store_url, body)


@pytest.mark.parametrize("settled", [True, False])
def test_only_a_failed_batch_is_retried_and_a_refusal_writes_nothing(
    store_url: str, fake: FakeOpenAI, base_url: str, settled: bool
) -> None:
    async def body(ledger: AsyncLedger) -> None:
        _, runner, handle = await submitted(ledger, fake, base_url, None)
        if settled:
            await settle(runner, handle)
        before = await ledger.log_position()
        with pytest.raises(InvalidTransition, match=handle.batch_id):
            await runner.retry_failed(handle)
        assert await ledger.log_position() == before

    run(store_url, body)


def test_a_batch_the_engine_failed_before_any_result_retries_every_member(
    store_url: str, fake: FakeOpenAI, base_url: str
) -> None:
    async def body(ledger: AsyncLedger) -> None:
        _, runner, handle = await submitted(ledger, fake, base_url, None)
        await ledger.fail_state(handle.state_id, error={"type": "EngineGaveUp"})
        await ledger.fail_batch(handle.batch_id, error={"type": "EngineGaveUp"})
        outcome = await runner.poll(handle)
        assert {t: x.kind for t, x in outcome.failures.items()} == dict.fromkeys(
            TOKENS, "MissingBatchOutput"
        )
        retry = await runner.retry_failed(handle)
        batch = await ledger.load(Batch, retry.batch_id)
        assert batch.members == {t: n for n, t in enumerate(TOKENS)}
        assert (await settle(runner, retry)).status == "completed"

    run(store_url, body)
