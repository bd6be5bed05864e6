"""The Ledger's public seams: what the CLI, replay and the batch runner use instead of its parts'
private names, and the consistent names kept beside the earlier ones."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.calls.batch_runner import BatchPending, OpenAIBatchRunner
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.adapters.storage.settings import StoreSettings
from auditledger.domain.errors import InvalidTransition, UnknownAggregate
from auditledger.domain.node_state import NodeState


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger.open("memory://") as opened:
        yield opened


def open_state(ledger: Ledger, token: str = "t") -> str:
    run_id = ledger.begin_run(config={})
    return ledger.open_state(run_id=run_id, token_id=token, node_id="n", step_index=0)


def test_log_position_is_the_last_event_of_the_log(ledger: Ledger) -> None:
    assert ledger.log_position() == 0
    state = open_state(ledger)
    after_open = ledger.log_position()
    assert after_open == 2  # RunStarted, StateOpened
    ledger.record_call(state, call_type="http", request={"q": 1})
    assert ledger.log_position() == after_open + 1


def test_recorded_calls_gives_a_parents_calls_with_their_json_in_order(ledger: Ledger) -> None:
    state = open_state(ledger)
    ledger.record_call(state, call_type="http", request={"q": 1}, response={"a": 1})
    ledger.record_call(state, call_type="llm", request={"q": 2}, error={"e": 2})
    calls = ledger.recorded_calls(state)
    assert [(c.call_index, c.call_type, c.status) for c in calls] == [
        (0, "http", "success"),
        (1, "llm", "error"),
    ]
    assert calls[0].request == {"q": 1} and calls[0].response == {"a": 1}
    assert calls[1].error == {"e": 2}
    with pytest.raises(UnknownAggregate):
        ledger.recorded_calls("not-an-id")


def test_mark_state_pending_and_its_earlier_name_mark_pending_do_the_same(ledger: Ledger) -> None:
    first, second = open_state(ledger, "a"), open_state(ledger, "b")
    ledger.mark_state_pending(first, "waiting")
    ledger.mark_pending(second, "waiting")
    assert ledger.load(NodeState, first).status == "pending"
    assert ledger.load(NodeState, second).status == "pending"
    ledger.complete_state(first)
    with pytest.raises(InvalidTransition):
        ledger.mark_state_pending(first)


def test_async_replay_openai_and_its_earlier_name_replay_from_the_ledger(ledger: Ledger) -> None:
    provider = FakeOpenAI()
    state = open_state(ledger)
    messages = [{"role": "user", "content": "hello"}]

    async def recorded() -> str | None:
        client = ledger.async_openai(
            state,
            api_key="k",
            base_url="https://fake.local/v1",
            max_retries=0,
            transport=httpx.MockTransport(provider.handle),
        )
        answer = await client.chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
        return answer.choices[0].message.content

    async def replayed(make: str) -> str | None:
        replay = getattr(ledger, make)(
            state, api_key="k", base_url="https://fake.local/v1", max_retries=0
        )
        answer = await replay.chat.completions.create(model="m", messages=messages)
        return answer.choices[0].message.content  # type: ignore[no-any-return]

    content = asyncio.run(recorded())
    assert content
    assert asyncio.run(replayed("async_replay_openai")) == content
    assert asyncio.run(replayed("replay_async_openai")) == content


def test_the_batch_runner_uses_the_inner_transport_of_a_client_the_ledger_built(
    ledger: Ledger,
) -> None:
    provider = FakeOpenAI(batch_polls=2)
    run_id = ledger.begin_run(config={})
    batch = ledger.create_batch(run_id, "summarise")
    ledger.add_batch_member(batch, "a")
    state = ledger.open_state(run_id=run_id, token_id="f", node_id="summarise", step_index=0)
    inner = httpx.MockTransport(provider.handle)
    client = ledger.openai(state, api_key="k", base_url="https://fake.local/v1", transport=inner)
    assert ledger.openai_transport(client) is inner
    assert ledger.openai_transport(openai.OpenAI(api_key="k")) is None

    runner = OpenAIBatchRunner(ledger, client)  # no transport=: the mock is found, no network
    handle = runner.submit(batch, state, {"a": {"model": "m", "messages": []}})
    with pytest.raises(BatchPending):
        runner.poll(handle)
    assert runner.poll(handle).status == "completed"


def test_the_sqlite_recorder_is_chosen_by_the_directory_layout(tmp_path: Path) -> None:
    fresh = StoreSettings.parse(f"sqlite:///{tmp_path / 'fresh'}")
    assert fresh.event_store_env()["APPLICATION_RECORDER_TOPIC"].endswith(":LedgerSQLiteRecorder")
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "payloads.sqlite3").write_bytes(b"")
    settings = StoreSettings.parse(f"sqlite:///{earlier}")
    topic = settings.event_store_env()["APPLICATION_RECORDER_TOPIC"]
    assert topic.endswith(":SeparatePayloadsSQLiteRecorder")
    with Ledger.open(f"sqlite:///{earlier}") as ledger:
        assert ledger.app.recorder.holds_payloads is False  # type: ignore[attr-defined]
        state = open_state(ledger)
        ledger.record_call(state, call_type="http", request={"q": 1})
        assert ledger.recorded_calls(state)[0].request == {"q": 1}
