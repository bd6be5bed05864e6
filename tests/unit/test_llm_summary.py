"""The llm summary of an exchange through ledger.openai(), with a MockTransport provider."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from uuid import UUID

import httpx
import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.calls.llm_summary import SUMMARY_KEYS
from auditledger.adapters.calls.replay import recorded_calls


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger.open("memory://") as opened:
        yield opened


def exchange(ledger: Ledger, response: httpx.Response, path: str = "/chat/completions"):  # type: ignore[no-untyped-def]
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    client = ledger.openai(
        state,
        api_key="k",
        base_url="https://llm.local/v1",
        max_retries=0,
        transport=httpx.MockTransport(lambda r: response),
    )
    client.get(path, cast_to=httpx.Response)
    [event] = [e for e in ledger.app.events.get(UUID(state)) if hasattr(e, "summary_json")]
    [call] = recorded_calls(ledger, UUID(state))
    return call, None if event.summary_json is None else json.loads(event.summary_json)


def test_a_responses_api_body_is_summarised_from_its_input_and_output_tokens(
    ledger: Ledger,
) -> None:
    body = {
        "model": "gpt-5",
        "service_tier": "flex",
        "usage": {
            "input_tokens": 40,
            "output_tokens": 9,
            "total_tokens": 49,
            "input_tokens_details": {"cached_tokens": 32},
            "output_tokens_details": {"reasoning_tokens": 5},
        },
    }
    call, summary = exchange(ledger, httpx.Response(200, json=body), "/responses")
    assert call.status == "success"
    assert set(summary) == set(SUMMARY_KEYS)
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (40, 9)
    assert (summary["cached_tokens"], summary["reasoning_tokens"]) == (32, 5)
    assert (summary["service_tier"], summary["endpoint"]) == ("flex", "/v1/responses")


def test_a_gzip_encoded_body_is_summarised_and_kept_as_it_came(ledger: Ledger) -> None:
    raw = gzip.compress(json.dumps({"model": "m", "usage": {"prompt_tokens": 3}}).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    call, summary = exchange(ledger, httpx.Response(200, headers=headers, content=raw))
    assert call.status == "success"
    assert summary["model"] == "m"
    assert ledger.payload(call.response["body"]["sha256"]) == raw


def test_a_jsonl_file_is_recorded_but_not_mistaken_for_malformed_json(ledger: Ledger) -> None:
    lines = b'{"custom_id": "a"}\n{"custom_id": "b"}\n'
    response = httpx.Response(200, headers={"content-type": "application/jsonl"}, content=lines)
    call, summary = exchange(ledger, response, "/files/file-1/content")
    assert (call.status, summary) == ("success", None)


def test_a_json_body_that_does_not_parse_is_an_error_call(ledger: Ledger) -> None:
    response = httpx.Response(200, headers={"content-type": "application/json"}, content=b"{")
    call, summary = exchange(ledger, response)
    assert call.status == "error"
    assert call.error["type"] == "MalformedResponse"
    assert summary is None
