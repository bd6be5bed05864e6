"""Replay serves a parent's recorded exchanges, only for the same requests, and writes nothing."""

from __future__ import annotations

import asyncio
from uuid import UUID

import httpx
import openai
import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.calls.batch_runner import OpenAIBatchRunner
from auditledger.adapters.calls.replay import recorded_calls
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.domain.errors import ReplayExhausted, ReplayMismatch, UnknownState

PROMPT = [{"role": "user", "content": "app crashes on login"}]


def open_state(ledger: Ledger, node: str = "classify") -> str:
    run_id = ledger.begin_run(config={})
    return ledger.open_state(run_id=run_id, token_id="t", node_id=node, step_index=0)


def test_an_llm_call_with_a_retry_replays_byte_for_byte_without_the_network(
    ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    state = open_state(ledger)
    fake.inject("429")
    live = ledger.openai(state, api_key="sk-live", base_url=base_url, max_retries=2)
    original = live.chat.completions.create(model="m", messages=PROMPT)
    ledger.complete_state(state, output={"label": original.choices[0].message.content})
    sent_live = len(fake.requests)
    before = ledger.app.recorder.max_notification_id()

    replay = ledger.replay_openai(state, api_key="sk-other", base_url=base_url, max_retries=2)
    again = replay.chat.completions.create(model="m", messages=PROMPT)

    assert again.model_dump() == original.model_dump()
    assert len(fake.requests) == sent_live
    assert ledger.app.recorder.max_notification_id() == before


def test_a_different_request_is_a_replay_mismatch_not_a_substitute(
    memory_ledger: Ledger, base_url: str
) -> None:
    state = open_state(memory_ledger)
    live = memory_ledger.openai(state, api_key="k", base_url=base_url, max_retries=0)
    live.chat.completions.create(model="m", messages=PROMPT)

    replay = memory_ledger.replay_openai(state, base_url=base_url, max_retries=0)
    with pytest.raises(openai.APIConnectionError) as raised:
        replay.chat.completions.create(model="other-model", messages=PROMPT)
    mismatch = raised.value.__cause__
    assert isinstance(mismatch, ReplayMismatch)
    assert (mismatch.id, mismatch.call_index) == (state, 0)
    assert "body" in mismatch.differences


def test_replay_serves_recorded_failures_and_never_more_than_was_recorded(
    memory_ledger: Ledger,
) -> None:
    state = open_state(memory_ledger, node="fetch")
    outcomes = iter([httpx.ConnectTimeout("slow dns"), httpx.Response(200, text="ok")])

    def answer(request: httpx.Request) -> httpx.Response:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with memory_ledger.http_client(state, transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(httpx.ConnectTimeout):
            client.get("https://api.example/a")
        client.get("https://api.example/a")

    with memory_ledger.replay_http_client(state) as replay:
        with pytest.raises(httpx.ConnectTimeout, match="slow dns"):
            replay.get("https://api.example/a")
        assert replay.get("https://api.example/a").text == "ok"
        with pytest.raises(ReplayExhausted):
            replay.get("https://api.example/a")


def test_the_async_replay_client_serves_the_same_bytes(memory_ledger: Ledger) -> None:
    state = open_state(memory_ledger, node="fetch")
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=b"\x00\x01payload"))
    with memory_ledger.http_client(state, transport=transport) as client:
        client.post("https://api.example/p", content=b"in")

    async def replayed() -> bytes:
        async with memory_ledger.async_replay_http_client(state) as replay:
            return (await replay.post("https://api.example/p", content=b"in")).content

    assert asyncio.run(replayed()) == b"\x00\x01payload"


def test_a_batch_submit_replays_because_its_multipart_boundary_is_derived_from_the_jsonl(
    memory_ledger: Ledger, base_url: str
) -> None:
    run_id = memory_ledger.begin_run(config={})
    batch = memory_ledger.create_batch(run_id, "summarise")
    memory_ledger.add_batch_member(batch, "a")
    state = memory_ledger.open_state(run_id=run_id, token_id="f", node_id="summarise", step_index=0)
    client = openai.OpenAI(api_key="k", base_url=base_url, max_retries=0)
    requests = {"a": {"model": "m", "messages": PROMPT}}
    OpenAIBatchRunner(memory_ledger, client).submit(batch, state, requests)

    replay = memory_ledger.replay_openai(state, base_url=base_url, max_retries=0)
    upload = recorded_calls(memory_ledger, UUID(state))[0]
    [part] = [p for p in upload.request["body"]["parts"] if p["name"] == "file"]
    data = memory_ledger.payload(part["sha256"])
    boundary = f"auditledger-{part['sha256'][:32]}"
    uploaded = replay.files.create(
        file=(f"{batch}.jsonl", data, "application/jsonl"),
        purpose="batch",
        extra_headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert uploaded.bytes == len(data)


def test_replay_of_a_made_up_state_is_refused(memory_ledger: Ledger) -> None:
    with pytest.raises(UnknownState):
        memory_ledger.replay_http_client("not-a-state")
