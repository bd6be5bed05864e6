"""The real openai SDK through ledger.openai(), against a fake provider on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from uuid import UUID

import openai
import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.calls.llm_summary import SUMMARY_KEYS
from auditledger.adapters.calls.replay import RecordedCall, recorded_calls
from auditledger.adapters.demo.fake_provider import FakeOpenAI

SECRET = "sk-proj-3f9a1c-never-in-the-ledger"
PROMPT = [{"role": "user", "content": "the printer is on fire"}]


def open_state(ledger: Ledger, token: str = "t") -> str:
    run_id = ledger.begin_run(config={})
    return ledger.open_state(run_id=run_id, token_id=token, node_id="classify", step_index=0)


def calls(ledger: Ledger, state: str) -> list[RecordedCall]:
    return recorded_calls(ledger, UUID(state))


def summary_of(ledger: Ledger, state: str, index: int) -> dict:
    events = [e for e in ledger.app.events.get(UUID(state)) if hasattr(e, "summary_json")]
    return json.loads(events[index].summary_json)


def test_a_chat_completion_is_an_llm_call_with_its_summary(ledger: Ledger, base_url: str) -> None:
    state = open_state(ledger)
    client = ledger.openai(state, api_key=SECRET, base_url=base_url, max_retries=0)
    completion = client.chat.completions.create(model="gpt-test", messages=PROMPT)
    assert completion.choices[0].message.content == "urgent"

    [call] = calls(ledger, state)
    assert (call.call_type, call.status) == ("llm", "success")
    summary = summary_of(ledger, state, 0)
    assert set(summary) == set(SUMMARY_KEYS)
    assert summary["model"] == "gpt-test"
    assert summary["prompt_tokens"] == completion.usage.prompt_tokens
    assert summary["completion_tokens"] == 1
    assert summary["cached_tokens"] == 0
    assert summary["reasoning_tokens"] == 0
    assert summary["finish_reason"] == "stop"
    assert summary["service_tier"] == "default"
    assert summary["via_batch"] is False
    assert json.loads(ledger.payload(call.response["body"]["sha256"])) == completion.model_dump(
        exclude_unset=True
    )


def test_a_429_then_200_shows_as_an_error_then_a_success(
    memory_ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    state = open_state(memory_ledger)
    fake.inject("429")
    client = memory_ledger.openai(state, api_key=SECRET, base_url=base_url, max_retries=2)
    client.chat.completions.create(model="gpt-test", messages=PROMPT)
    recorded = calls(memory_ledger, state)
    assert [c.call_index for c in recorded] == [0, 1]
    assert [c.status for c in recorded] == ["error", "success"]
    assert recorded[0].error["status_code"] == 429
    retry_headers = [dict(c.request["headers"])["x-stainless-retry-count"] for c in recorded]
    assert retry_headers == ["0", "1"]


@pytest.mark.parametrize(
    ("fault", "raised", "error_type"),
    [
        ("500", openai.InternalServerError, "HTTPStatus"),
        ("timeout", openai.APITimeoutError, "ReadTimeout"),
        ("drop", openai.APIConnectionError, "RemoteProtocolError"),
        ("malformed", json.JSONDecodeError, "MalformedResponse"),
    ],
)
def test_every_injected_fault_is_an_error_call_before_the_sdk_raises(
    memory_ledger: Ledger,
    fake: FakeOpenAI,
    base_url: str,
    fault: str,
    raised: type[Exception],
    error_type: str,
) -> None:
    state = open_state(memory_ledger)
    fake.inject(fault)
    client = memory_ledger.openai(
        state, api_key=SECRET, base_url=base_url, max_retries=0, timeout=0.3
    )
    with pytest.raises(raised):
        client.chat.completions.create(model="gpt-test", messages=PROMPT)
    [call] = calls(memory_ledger, state)
    assert call.status == "error"
    assert call.error["type"] == error_type


def test_a_streamed_completion_is_recorded_whole_with_usage_in_its_summary(
    memory_ledger: Ledger, base_url: str
) -> None:
    state = open_state(memory_ledger)
    client = memory_ledger.openai(state, api_key=SECRET, base_url=base_url, max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-test", messages=PROMPT, stream=True, stream_options={"include_usage": True}
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "urgent"
    [call] = calls(memory_ledger, state)
    assert call.response["truncated"] is False
    assert memory_ledger.payload(call.response["body"]["sha256"]).endswith(b"data: [DONE]\n\n")
    summary = summary_of(memory_ledger, state, 0)
    assert (summary["model"], summary["finish_reason"]) == ("gpt-test", "stop")
    assert summary["total_tokens"] is not None


def test_the_async_client_records_retries_as_dense_calls(
    memory_ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    state = open_state(memory_ledger)
    fake.inject("500")

    async def scenario() -> str | None:
        async with memory_ledger.async_openai(
            state, api_key=SECRET, base_url=base_url, max_retries=1
        ) as client:
            completion = await client.chat.completions.create(model="m", messages=PROMPT)
            return completion.choices[0].message.content

    assert asyncio.run(scenario()) == "urgent"
    recorded = calls(memory_ledger, state)
    assert [(c.call_index, c.status) for c in recorded] == [(0, "error"), (1, "success")]
    assert summary_of(memory_ledger, state, 1)["model"] == "m"


def test_an_async_stream_is_recorded_whole_once_the_sdk_reaches_done(
    memory_ledger: Ledger, base_url: str
) -> None:
    state = open_state(memory_ledger)

    async def scenario() -> str:
        async with memory_ledger.async_openai(state, api_key=SECRET, base_url=base_url) as client:
            stream = await client.chat.completions.create(
                model="m", messages=PROMPT, stream=True, stream_options={"include_usage": True}
            )
            parts = [
                chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices
            ]
            return "".join(parts)

    assert asyncio.run(scenario()) == "urgent"
    [call] = calls(memory_ledger, state)
    assert (call.status, call.response["truncated"]) == ("success", False)
    assert summary_of(memory_ledger, state, 0)["completion_tokens"] == 1
