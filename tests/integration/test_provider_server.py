"""The fake provider served on 127.0.0.1: its switches, keep-alive, streaming, the JSON echo."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.adapters.demo.provider_server import ProviderServer, Switches, serving

PROMPT = [{"role": "user", "content": "the server is down"}]


def statuses(switches: Switches, requests: int = 40) -> list[int]:
    with serving(FakeOpenAI(), switches) as server, httpx.Client() as client:
        return [
            client.post(f"{server.origin}/json/n", json={"n": n}).status_code
            for n in range(requests)
        ]


def test_it_listens_on_loopback_only() -> None:
    with serving(FakeOpenAI()) as server:
        assert server.server_address[0] == "127.0.0.1"
        assert server.base_url.startswith("http://127.0.0.1:")


def test_each_request_waits_the_latency_without_holding_up_other_connections() -> None:
    with serving(FakeOpenAI(), Switches(latency_ms=500)) as server:
        url = f"{server.origin}/json/slow"
        started = time.perf_counter()
        httpx.post(url, json={})
        one = time.perf_counter() - started
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: httpx.post(url, json={}).status_code, range(4)))
        four = time.perf_counter() - started
    assert one >= 0.5
    assert answers == [200] * 4
    assert four < 1.5, f"four concurrent requests took {four:.2f}s: latency is serialised"


def test_the_fail_rate_fails_the_same_requests_for_the_same_seed() -> None:
    first = statuses(Switches(fail_rate=0.3, seed=7))
    assert statuses(Switches(fail_rate=0.3, seed=7)) == first
    assert statuses(Switches(fail_rate=0.3, seed=8)) != first
    assert set(first) == {200, 500}
    assert 4 <= first.count(500) <= 20


def test_fail_rate_zero_never_fails_and_one_always_answers_the_chosen_status() -> None:
    assert set(statuses(Switches(fail_rate=0.0), 10)) == {200}
    assert set(statuses(Switches(fail_rate=1.0, fail_status=429), 10)) == {429}


@pytest.mark.parametrize(
    "switches",
    [
        {"fail_rate": 1.5},
        {"latency_ms": -1},
        {"fail_status": 404},
        {"batch_fault": "nope"},
    ],
)
def test_a_switch_out_of_range_is_refused(switches: dict) -> None:
    with pytest.raises(ValueError):
        Switches(**switches)


def test_a_batch_fault_switch_gives_every_batch_a_failing_member() -> None:
    lines = [
        {
            "custom_id": f"b:{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": PROMPT},
        }
        for n in range(3)
    ]
    jsonl = "".join(json.dumps(line) + "\n" for line in lines).encode()
    with serving(FakeOpenAI(), Switches(batch_fault="error_line")) as server:
        client = openai.OpenAI(api_key="k", base_url=server.base_url, max_retries=0)
        for _ in range(2):
            upload = client.files.create(file=("in.jsonl", jsonl), purpose="batch")
            created = client.batches.create(
                input_file_id=upload.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
            batch = client.batches.retrieve(created.id)
            assert batch.status == "completed"
            assert batch.request_counts is not None
            assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
            assert batch.error_file_id is not None
            failed = json.loads(client.files.content(batch.error_file_id).read())
            assert failed["custom_id"] == "b:0"


def test_sequential_requests_share_one_connection_without_stalling() -> None:
    with serving(FakeOpenAI()) as server, httpx.Client() as client:
        started = time.perf_counter()
        for n in range(200):
            answer = client.post(f"{server.origin}/json/n", json={"n": n})
            assert answer.json()["json"] == {"n": n}
            client.post(
                f"{server.base_url}/chat/completions", json={"model": "m", "messages": PROMPT}
            ).raise_for_status()
        elapsed = time.perf_counter() - started
        assert server.connections == 1
    assert elapsed < 4.0, f"400 requests took {elapsed:.2f}s: a stall per request"


def test_a_stream_is_chunked_and_read_by_the_openai_sdk() -> None:
    with serving(FakeOpenAI()) as server:
        body = {"model": "m", "messages": PROMPT, "stream": True}
        with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body) as raw:
            assert raw.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in raw.headers
            assert raw.read().endswith(b"data: [DONE]\n\n")
        client = openai.OpenAI(api_key="k", base_url=server.base_url, max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "urgent"
    assert chunks[-1].usage is not None


def test_a_chunked_request_body_is_read_whole() -> None:
    with serving(FakeOpenAI()) as server:
        parts = iter([b'{"a": ', b"[1, 2]}"])
        answer = httpx.post(f"{server.origin}/json/chunked", content=parts)
    assert answer.json() == {"method": "POST", "path": "/json/chunked", "json": {"a": [1, 2]}}


def test_closing_the_server_ends_its_open_connections() -> None:
    server = ProviderServer(FakeOpenAI())
    server.start()
    with httpx.Client() as client:
        client.get(f"{server.origin}/json/x")
        server.close()
        with pytest.raises(httpx.TransportError):
            client.get(f"{server.origin}/json/x")
