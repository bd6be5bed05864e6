"""The audited httpx transport, driven through httpx.MockTransport on an in-memory ledger."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from uuid import UUID

import httpx
import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.calls.exchange import REDACTED
from auditledger.adapters.calls.replay import RecordedCall, recorded_calls
from auditledger.domain.errors import InvalidArgument, ParentClosed, UnknownState
from auditledger.domain.node_state import NodeState

SECRET = "sk-live-5ec12e7-do-not-leak"


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger.open("memory://") as opened:
        yield opened


@pytest.fixture
def state(ledger: Ledger) -> str:
    run_id = ledger.begin_run(config={})
    return ledger.open_state(run_id=run_id, token_id="t", node_id="fetch", step_index=0)


def calls(ledger: Ledger, parent: str) -> list[RecordedCall]:
    return recorded_calls(ledger, UUID(parent))


def body_of(ledger: Ledger, ref: dict) -> bytes:
    data = ledger.payload(ref["sha256"])
    assert hashlib.sha256(data).hexdigest() == ref["sha256"]
    assert len(data) == ref["size"]
    return data


def test_a_2xx_exchange_is_one_success_call_with_both_bodies_in_the_payload_store(
    ledger: Ledger, state: str
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"echo": json.loads(request.content)})

    with ledger.http_client(state, transport=httpx.MockTransport(answer)) as client:
        response = client.post("https://api.example/v1/echo?x=1", json={"q": "héllo"})
    assert response.json() == {"echo": {"q": "héllo"}}

    [call] = calls(ledger, state)
    assert (call.call_index, call.call_type, call.status) == (0, "http", "success")
    assert call.request["method"] == "POST"
    assert call.request["url"] == "https://api.example/v1/echo?x=1"
    assert body_of(ledger, call.request["body"]) == response.request.content
    assert call.response["status_code"] == 200
    assert call.response["truncated"] is False
    assert body_of(ledger, call.response["body"]) == response.content


@pytest.mark.parametrize("status", [301, 404, 429, 500, 503])
def test_a_non_2xx_status_is_an_error_call_with_the_response_recorded(
    ledger: Ledger, state: str, status: int
) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(status, text="nope"))
    with ledger.http_client(state, transport=transport) as client:
        assert client.get("https://api.example/x").status_code == status
    [call] = calls(ledger, state)
    assert call.status == "error"
    assert call.error["status_code"] == status
    assert call.response["status_code"] == status
    assert body_of(ledger, call.response["body"]) == b"nope"


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadError("connection reset by peer"),
        httpx.ConnectError("[Errno -2] Name or service not known"),
    ],
)
def test_a_transport_exception_is_recorded_before_the_caller_gets_the_original(
    ledger: Ledger, state: str, failure: Exception
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure

    seen_by_caller: list[list[RecordedCall]] = []
    with (
        ledger.http_client(state, transport=httpx.MockTransport(fail)) as client,
        pytest.raises(type(failure)) as raised,
    ):
        try:
            client.get("https://api.example/x")
        except Exception:
            seen_by_caller.append(calls(ledger, state))
            raise
    assert raised.value is failure
    [[call]] = seen_by_caller
    assert call.status == "error"
    assert call.response is None
    assert call.error == {
        "type": type(failure).__name__,
        "module": "httpx",
        "message": str(failure),
    }


def test_each_redirect_hop_is_its_own_call_with_dense_indices(ledger: Ledger, state: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old":
            return httpx.Response(302, headers={"location": "/new"})
        return httpx.Response(200, text="here")

    transport = httpx.MockTransport(answer)
    with ledger.http_client(state, transport=transport, follow_redirects=True) as client:
        assert client.get("https://api.example/old").text == "here"
    hops = calls(ledger, state)
    assert [c.call_index for c in hops] == [0, 1]
    assert [c.request["url"] for c in hops] == [
        "https://api.example/old",
        "https://api.example/new",
    ]
    assert [c.response["status_code"] for c in hops] == [302, 200]
    assert [c.status for c in hops] == ["error", "success"]


def chunks(n: int, size: int) -> httpx.Response:
    def stream() -> Iterator[bytes]:
        for i in range(n):
            yield bytes([65 + i]) * size

    return httpx.Response(200, content=stream())


def test_a_stream_read_to_the_end_is_recorded_once_whole(ledger: Ledger, state: str) -> None:
    transport = httpx.MockTransport(lambda r: chunks(5, 1000))
    with (
        ledger.http_client(state, transport=transport) as client,
        client.stream("GET", "https://api.example/big") as response,
    ):
        received = b"".join(response.iter_raw())
    [call] = calls(ledger, state)
    assert call.response["truncated"] is False
    assert body_of(ledger, call.response["body"]) == received
    assert len(received) == 5000


def test_a_stream_the_caller_leaves_early_is_recorded_as_truncated_with_its_byte_count(
    ledger: Ledger, state: str
) -> None:
    transport = httpx.MockTransport(lambda r: chunks(5, 1000))
    with (
        ledger.http_client(state, transport=transport) as client,
        client.stream("GET", "https://api.example/big") as response,
    ):
        first = next(response.iter_raw())
    [call] = calls(ledger, state)
    assert call.response["truncated"] is True
    assert call.response["body"]["size"] == len(first) == 1000
    assert body_of(ledger, call.response["body"]) == first


def test_a_stream_that_breaks_mid_body_is_an_error_call_with_the_bytes_that_arrived(
    ledger: Ledger, state: str
) -> None:
    def stream() -> Iterator[bytes]:
        yield b"partial"
        raise httpx.ReadError("connection reset mid-body")

    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=stream()))
    with (
        ledger.http_client(state, transport=transport) as client,
        pytest.raises(httpx.ReadError),
    ):
        client.get("https://api.example/big")
    [call] = calls(ledger, state)
    assert call.status == "error"
    assert call.error["type"] == "ReadError"
    assert call.response["truncated"] is True
    assert body_of(ledger, call.response["body"]) == b"partial"


def test_credential_headers_and_configured_headers_are_redacted_before_hashing(
    ledger: Ledger, state: str
) -> None:
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, headers={"set-cookie": f"session={SECRET}"})
    )
    headers = {
        "Authorization": f"Bearer {SECRET}",
        "api-key": SECRET,
        "X-Api-Key": SECRET,
        "Cookie": f"s={SECRET}",
        "X-Tenant-Token": SECRET,
    }
    with ledger.http_client(
        state, transport=transport, redact_headers=["x-tenant-token"]
    ) as client:
        client.get(f"https://user:{SECRET}@api.example/x", headers=headers)
    [call] = calls(ledger, state)
    sent = dict(call.request["headers"])
    for name in ("authorization", "api-key", "x-api-key", "cookie", "x-tenant-token"):
        assert sent[name] == REDACTED
    assert dict(call.response["headers"])["set-cookie"] == REDACTED
    assert SECRET not in json.dumps([call.request, call.response])


def test_a_multipart_upload_names_each_part_by_hash(ledger: Ledger, state: str) -> None:
    jsonl = b'{"a":1}\r\n{"b":2}\n'
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"id": "file-1"}))
    with ledger.http_client(state, transport=transport) as client:
        client.post(
            "https://api.example/files",
            files={"file": ("in.jsonl", jsonl, "application/jsonl")},
            data={"purpose": "batch"},
        )
    [call] = calls(ledger, state)
    parts = {part["name"]: part for part in call.request["body"]["parts"]}
    assert parts["file"]["filename"] == "in.jsonl"
    assert body_of(ledger, parts["file"]) == jsonl
    assert body_of(ledger, parts["purpose"]) == b"batch"


def test_a_made_up_state_id_gets_no_client_and_nothing_is_written(
    ledger: Ledger, state: str
) -> None:
    before = ledger.app.recorder.max_notification_id()
    with pytest.raises(UnknownState):
        ledger.http_client(f"{state}_row0")
    with pytest.raises(UnknownState):
        ledger.openai(ledger.state_id(token_id="never", node_id="opened"), api_key="k")
    assert ledger.app.recorder.max_notification_id() == before


def test_a_finished_state_gets_no_recording_client(ledger: Ledger, state: str) -> None:
    ledger.complete_state(state)
    with pytest.raises(ParentClosed):
        ledger.http_client(state)


@pytest.mark.parametrize("bypass", ["mounts", "proxy"])
def test_options_that_would_bypass_the_audited_transport_are_refused(
    ledger: Ledger, state: str, bypass: str
) -> None:
    with pytest.raises(InvalidArgument, match="bypass"):
        ledger.http_client(state, **{bypass: None})


def test_an_operation_is_a_parent_for_http_calls_too(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    operation = ledger.begin_operation(run_id=run_id, node_id="sink", operation_type="sink_write")
    transport = httpx.MockTransport(lambda r: httpx.Response(201))
    with ledger.http_client(operation_id=operation, transport=transport) as client:
        client.put("https://store.example/out.jsonl", content=b"rows")
    [call] = calls(ledger, operation)
    assert call.status == "success"
    assert body_of(ledger, call.request["body"]) == b"rows"


def test_the_async_client_records_like_the_sync_one(ledger: Ledger, state: str) -> None:
    attempts = iter([httpx.ReadTimeout("slow"), None, None])

    async def answer(request: httpx.Request) -> httpx.Response:
        failure = next(attempts)
        if failure is not None:
            raise failure
        return httpx.Response(200, content=b"x" * 10)

    async def scenario() -> None:
        async with ledger.async_http_client(state, transport=httpx.MockTransport(answer)) as c:
            with pytest.raises(httpx.ReadTimeout):
                await c.get("https://api.example/a")
            assert (await c.get("https://api.example/a")).content == b"x" * 10
            async with c.stream("GET", "https://api.example/a") as response:
                async for _ in response.aiter_raw():
                    break

    asyncio.run(scenario())
    recorded = calls(ledger, state)
    assert [c.call_index for c in recorded] == [0, 1, 2]
    assert [c.status for c in recorded] == ["error", "success", "success"]
    assert recorded[0].error["type"] == "ReadTimeout"
    assert recorded[1].response["truncated"] is False
    assert ledger.load(NodeState, state).call_count == 3
