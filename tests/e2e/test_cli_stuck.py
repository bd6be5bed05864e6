"""Through the `auditledger` entry point: lag is not tampering, a stuck catch-up is a finding,
and `catch-up --skip POSITION --reason TEXT` is the recorded way past it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from auditledger.adapters import Ledger
from tests.support.cli_runner import run_cli as run

STATE_OPENED = "auditledger:NodeState.StateOpened:v1"


def record(directory: Path) -> str:
    store = f"sqlite:///{directory}"
    with Ledger.open(store) as ledger:
        run_id = ledger.begin_run(config={"p": 1})
        for token in ("a", "b"):
            state = ledger.open_state(run_id=run_id, token_id=token, node_id="n", step_index=0)
            ledger.record_call(state, call_type="llm", request={"q": token}, response={"a": 1})
    return store


def test_verify_chain_on_a_never_caught_up_copy_passes_and_reports_the_lag(
    tmp_path: Path,
) -> None:
    store = record(tmp_path / "audit")
    assert run("seal", "--store", store).returncode == 0
    done = run("verify", "--chain", "--store", store)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "behind the log's last 5" in done.stdout and "FLAGGED" in done.stdout
    assert run("verify", "--chain", "--strict", "--store", store).returncode == 1


def test_an_edited_topic_is_a_finding_and_skip_gets_past_it(tmp_path: Path) -> None:
    store = record(tmp_path / "audit")
    with sqlite3.connect(tmp_path / "audit" / "events.sqlite3") as conn:
        conn.execute(  # the second state's StateOpened now claims to be a RunStarted
            "UPDATE stored_events SET topic = 'auditledger:Run.RunStarted:v1' "
            "WHERE rowid = (SELECT MAX(rowid) FROM stored_events WHERE topic = ?)",
            (STATE_OPENED,),
        )
    verified = run("verify", "--catch-up", "--store", store)
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "Traceback" not in verified.stderr
    assert "position 4" in verified.stderr and "FAIL" in verified.stdout
    caught = run("catch-up", "--store", store)
    assert caught.returncode == 2 and "--skip 4" in caught.stderr
    wrong = run("catch-up", "--skip", "5", "--reason", "not it", "--store", store)
    assert wrong.returncode == 2 and "only the event that stops catch-up" in wrong.stderr
    skipped = run("catch-up", "--skip", "4", "--reason", "topic edited", "--store", store)
    assert "skipped position 4" in skipped.stdout
    assert skipped.returncode == 2 and "--skip 5" in skipped.stderr  # its call has no parent
    orphan = run("catch-up", "--skip", "5", "--reason", "its state is skipped", "--store", store)
    assert orphan.returncode == 0, orphan.stdout + orphan.stderr
    listed = run("verify", "--store", store)
    assert "position 4" in listed.stdout and "topic edited" in listed.stdout
    assert "FLAGGED" in listed.stdout
