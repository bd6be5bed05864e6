"""The landscape commands through the installed `auditledger` entry point."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from auditledger.adapters import Ledger
from tests.support.cli_runner import run_cli as cli


def record(url: str) -> tuple[str, str]:
    with Ledger.open(url) as ledger:
        run_id = ledger.begin_run(config={"cli": True})
        state = ledger.open_state(run_id=run_id, token_id="tok-1", node_id="llm", step_index=0)
        ledger.record_call(state, call_type="llm", request={"q": 1}, response={"a": 1})
        ledger.record_call(state, call_type="llm", request={"q": 2}, error={"type": "Timeout"})
        ledger.complete_state(state, output={"label": "x"})
        ledger.complete_run(run_id)
    return run_id, state


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ledger"


def test_demo_then_verify_passes_with_every_check_listed(store: str) -> None:
    demo = cli("demo", "--store", store)
    assert demo.returncode == 0, demo.stderr
    assert "the live landscape equals a fresh rebuild" in demo.stdout
    checked = cli("verify", "--store", store)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "FAIL" not in checked.stdout


def test_catch_up_then_verify_then_a_tampered_row_fails_verify(store: str, tmp_path: Path) -> None:
    record(store)
    before = cli("verify", "--store", store)
    assert before.returncode == 0, before.stdout + before.stderr
    assert "behind the log" in before.stdout and "FLAGGED" in before.stdout
    strict = cli("verify", "--strict", "--store", store)
    assert strict.returncode == 1 and "FAIL" in strict.stdout
    caught = cli("catch-up", "--store", store)
    # complete_run caught the landscape up to the state's end: the RunCompleted is left
    assert caught.returncode == 0 and "applied 1 events; landscape at position 6" in caught.stdout
    assert cli("verify", "--store", store).returncode == 0
    with sqlite3.connect(tmp_path / "ledger" / "landscape.sqlite3") as conn:
        conn.execute("UPDATE calls SET status = 'success' WHERE call_index = 1")
    tampered = cli("verify", "--store", store)
    assert tampered.returncode == 1
    assert "equals a fresh rebuild" in tampered.stdout and "FAIL" in tampered.stdout


def test_explain_json_is_the_lineage_of_a_run(store: str) -> None:
    run_id, state = record(store)
    shown = cli("explain", "--run", run_id, "--json", "--store", store)
    assert shown.returncode == 0, shown.stderr
    lineage = json.loads(shown.stdout)
    (run,) = lineage["runs"]
    assert run["states"][0]["state_id"] == state
    assert [c["status"] for c in run["states"][0]["calls"]] == ["success", "error"]
    tree = cli("explain", "--state", state, "--store", store)
    assert tree.returncode == 0 and "call 1 llm error" in tree.stdout


def test_export_writes_every_row_of_the_run_as_jsonl_or_csv(store: str) -> None:
    run_id, _ = record(store)
    lines = cli("export", "--run", run_id, "--format", "jsonl", "--store", store)
    rows = [json.loads(line) for line in lines.stdout.splitlines()]
    landscape_rows = [r for r in rows if r["table"] != "checkpoint"]
    assert [r["table"] for r in landscape_rows] == ["runs", "node_states", "calls", "calls"]
    assert landscape_rows[2]["row"]["call_index"] == 0
    table = cli("export", "--run", run_id, "--format", "csv", "--store", store)
    records = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [r["table"] for r in records] == [r["table"] for r in rows]  # the same records
    assert records[-1]["table"] == "checkpoint"
    sealed = json.loads(records[-1]["checkpoint_json"])
    assert (sealed["position"], sealed["chain_hash"]) == (
        rows[-1]["row"]["position"],
        rows[-1]["row"]["chain_hash"],
    )
    assert records[2]["call_index"] == "0"


def test_rebuild_into_another_landscape_until_a_position(store: str, tmp_path: Path) -> None:
    record(store)
    auditor = f"sqlite:///{tmp_path}/auditor.sqlite3"
    built = cli("rebuild", "--store", store, "--landscape", auditor, "--until", "3")
    assert built.returncode == 0, built.stderr
    assert "events/s" in built.stdout and "rows in calls" in built.stdout
    with sqlite3.connect(tmp_path / "auditor.sqlite3") as conn:
        assert conn.execute("SELECT position FROM projection_positions").fetchone() == (3,)
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone() == (1,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("verify", "--store", "foo://bar"), "unknown scheme 'foo'"),
        (("catch-up", "--store", "sqlite:///{tmp}/nothing-here"), "no ledger at"),
        (("rebuild", "--store", "{store}", "--landscape", "nope://x"), "landscape URL"),
        (("explain", "--run", "r", "--store", "{store}", "--landscape", "{odd}"), "lacks columns"),
        (("explain", "--run", "no-such-run", "--store", "{store}"), "unknown run 'no-such-run'"),
        (("explain", "--store", "{store}"), "exactly one of"),
        (("rebuild", "--store", "{store}", "--until", "yesterday"), "until='yesterday'"),
    ],
)
def test_a_bad_store_or_landscape_is_one_clear_line_and_exit_2(
    args: tuple[str, ...], message: str, store: str, tmp_path: Path
) -> None:
    record(store)
    odd = tmp_path / "odd.sqlite3"
    with sqlite3.connect(odd) as conn:
        conn.execute("CREATE TABLE runs (run_id TEXT)")
    filled = [a.format(tmp=tmp_path, store=store, odd=f"sqlite:///{odd}") for a in args]
    result = cli(*filled)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "nothing-here").exists()


@pytest.mark.postgres
def test_a_missing_postgres_database_is_one_clear_line(postgres_server: str) -> None:
    result = cli("verify", "--store", f"{postgres_server}/auditledger_does_not_exist")
    assert result.returncode == 2
    assert 'database "auditledger_does_not_exist" does not exist' in result.stderr
    assert "Traceback" not in result.stderr


def test_explain_of_a_row_edited_below_its_check_is_one_line_naming_the_rule(
    store: str, tmp_path: Path
) -> None:
    _, state = record(store)
    assert cli("catch-up", "--store", store).returncode == 0
    with sqlite3.connect(tmp_path / "ledger" / "landscape.sqlite3") as conn:
        conn.execute("PRAGMA ignore_check_constraints=ON")
        conn.execute("UPDATE node_states SET completed_at = NULL")
    refused = cli("explain", "--state", state, "--store", store)
    assert refused.returncode == 2 and refused.stdout == ""
    assert f"landscape row node_states state_id={state}" in refused.stderr
    assert "ck_node_states_completed_at" in refused.stderr
