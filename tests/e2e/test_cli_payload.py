"""`auditledger payload`, explain's refs and llm summaries, and `export --with-payloads`,
through the installed entry point on a demo run."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from pathlib import Path

import pytest

from tests.support.cli_runner import run_cli as cli


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    store = f"sqlite:///{tmp_path_factory.mktemp('payload')}/ledger"
    assert cli("demo", "--store", store).returncode == 0
    found = cli("explain", "--run", _run_id(store), "--json", "--store", store)
    assert found.returncode == 0, found.stderr
    return store, json.loads(found.stdout)["runs"][0]


def _run_id(store: str) -> str:
    path = Path(store.removeprefix("sqlite:///")) / "landscape.sqlite3"
    import sqlite3

    with sqlite3.connect(path) as conn:
        return str(conn.execute("SELECT run_id FROM runs").fetchone()[0])


def _http_call(run: dict) -> dict:
    source = next(op for op in run["operations"] if op["operation_type"] == "source_load")
    return source["calls"][0]


def test_payload_prints_the_bytes_of_a_ref_and_with_body_the_http_body_it_names(
    demo: tuple[str, dict],
) -> None:
    store, run = demo
    call = _http_call(run)
    request = cli("payload", call["response_ref"], "--store", store)
    assert request.returncode == 0, request.stderr
    assert hashlib.sha256(request.stdout.encode()).hexdigest() == call["response_ref"]
    body = cli("payload", call["response_ref"], "--body", "--store", store)
    assert body.returncode == 0, body.stderr
    assert json.loads(body.stdout)["tickets"][0] == "printer on fire"
    state = run["states"][0]
    assert json.loads(cli("payload", state["input_hash"], "--store", store).stdout) == {
        "text": "printer on fire"
    }
    not_http = cli("payload", state["input_hash"], "--body", "--store", store)
    assert not_http.returncode == 2 and "no body.sha256" in not_http.stderr
    unknown = cli("payload", "ab" * 32, "--store", store)
    assert unknown.returncode == 2 and "is not in the store" in unknown.stderr
    assert unknown.stdout == ""


def test_explain_text_shows_refs_in_full_llm_summaries_and_batch_results(
    demo: tuple[str, dict],
) -> None:
    store, run = demo
    token = run["states"][0]["token_id"]
    shown = cli("explain", "--token", token, "--store", store)
    assert shown.returncode == 0, shown.stderr
    state = run["states"][0]
    assert f"input {state['input_hash']} (present)" in shown.stdout
    assert f"request {state['calls'][0]['request_ref']} (present)" in shown.stdout
    assert "llm demo-llm, tokens in/out/total" in shown.stdout
    assert "executed by step 2 summarise" in shown.stdout
    assert "member 0 " in shown.stdout and "via batch (" in shown.stdout


def test_export_with_payloads_carries_every_referenced_payload_in_jsonl_and_csv(
    demo: tuple[str, dict],
) -> None:
    store, run = demo
    lines = cli("export", "--run", run["run_id"], "--with-payloads", "--store", store)
    assert lines.returncode == 0, lines.stderr
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    payloads = {r["row"]["ref"]: r["row"] for r in records if r["table"] == "payloads"}
    for ref, row in payloads.items():
        assert row["status"] == "present"
        assert hashlib.sha256(base64.b64decode(row["base64"])).hexdigest() == ref
    call = _http_call(run)
    body = json.loads(base64.b64decode(payloads[call["response_ref"]]["base64"]))["body"]
    assert body["sha256"] in payloads  # the HTTP body the call names travels with it
    assert run["states"][0]["input_hash"] in payloads and run["config_hash"] in payloads
    without = cli("export", "--run", run["run_id"], "--store", store)
    assert "payloads" not in {json.loads(line)["table"] for line in without.stdout.splitlines()}
    table = cli("export", "--run", run["run_id"], "--format", "csv", "--with-payloads",
                "--store", store)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [r["table"] for r in rows] == [r["table"] for r in records]
    assert {r["ref"]: r["base64"] for r in rows if r["table"] == "payloads"} == {
        ref: row["base64"] for ref, row in payloads.items()
    }
