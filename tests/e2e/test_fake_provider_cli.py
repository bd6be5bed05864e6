"""`auditledger fake-provider` as a developer runs it: prints its URL, serves, stops on a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai
import pytest

from tests.support.cli_runner import AUDITLEDGER, run_cli

PROMPT = [{"role": "user", "content": "all quiet"}]


@contextmanager
def provider(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [AUDITLEDGER, "fake-provider", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        yield process, process.stdout.readline().strip()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_it_serves_the_openai_sdk_then_stops_cleanly_on_a_signal(stop: signal.Signals) -> None:
    with provider() as (process, base_url):
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = openai.OpenAI(api_key="k", base_url=base_url, max_retries=0)
        reply = client.chat.completions.create(model="m", messages=PROMPT)
        assert reply.choices[0].message.content == "normal"
        process.send_signal(stop)
        assert process.wait(timeout=15) == 0
        assert process.stderr is not None
        assert "fake provider stopped" in process.stderr.read()
        with pytest.raises(httpx.ConnectError):
            httpx.get(base_url.removesuffix("/v1") + "/json/x")


def test_its_switches_reach_the_server() -> None:
    with provider("--fail-rate", "1", "--fail-status", "429", "--latency-ms", "200") as (
        process,
        base_url,
    ):
        answer = httpx.post(base_url.removesuffix("/v1") + "/json/x", json={})
        assert answer.status_code == 429
        assert answer.elapsed.total_seconds() >= 0.2
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("fake-provider", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1:" in result.stderr


def test_a_switch_out_of_range_is_refused() -> None:
    result = run_cli("fake-provider", "--port", "0", "--fail-status", "404")
    assert result.returncode == 2
    assert "fail_status" in result.stderr
