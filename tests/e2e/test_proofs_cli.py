"""Merkle proofs through the installed `auditledger` entry point, checked by the stand-alone
verifier run as its own script (python merkle_verify.py FILE), as an auditor would."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from auditledger.adapters.tamper import merkle_verify
from tests.support.cli_runner import run_cli as run

VERIFIER = Path(merkle_verify.__file__)


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/audit"
    assert run("demo", "--store", url).returncode == 0
    return url


def stand_alone(tmp_path: Path, printed: str) -> subprocess.CompletedProcess[str]:
    """The verifier copied out of the package and run with no auditledger on the path."""
    (tmp_path / "auditor").mkdir(exist_ok=True)
    copy = tmp_path / "auditor" / "merkle_verify.py"
    copy.write_text(VERIFIER.read_text(encoding="utf-8"), encoding="utf-8")
    proofs = tmp_path / "auditor" / "proofs.json"
    proofs.write_text(printed, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-I", str(copy), str(proofs)],
        capture_output=True,
        text=True,
        cwd=tmp_path / "auditor",
        timeout=60,
    )


def test_prove_prints_proofs_an_auditor_checks_with_the_verifier_file_alone(
    store: str, tmp_path: Path
) -> None:
    assert run("seal", "--store", store).returncode == 0
    by_position = run("prove", "--position", "3", "--store", store)
    assert by_position.returncode == 0, by_position.stderr
    (proof,) = json.loads(by_position.stdout)["proofs"]
    assert proof["position"] == 3 and proof["leaf_index"] == 2
    assert stand_alone(tmp_path, by_position.stdout).returncode == 0

    events = Path(store[len("sqlite:///") :]) / "events.sqlite3"
    with sqlite3.connect(events) as db:
        state_id, call_state = db.execute(
            "SELECT originator_id, state FROM stored_events WHERE topic LIKE '%CallRecorded%' "
            "LIMIT 1"
        ).fetchone()
    call_id = json.loads(call_state)["call_id"]
    by_state = run("prove", "--state", state_id, "--store", store)
    by_call = run("prove", "--call", call_id, "--store", store)
    assert by_state.returncode == by_call.returncode == 0, by_state.stderr + by_call.stderr
    assert len(json.loads(by_state.stdout)["proofs"]) >= 2
    assert stand_alone(tmp_path, by_state.stdout).returncode == 0
    assert stand_alone(tmp_path, by_call.stdout).returncode == 0

    forged = json.loads(by_position.stdout)
    forged["proofs"][0]["leaf_index"] += 1
    failed = stand_alone(tmp_path, json.dumps(forged))
    assert failed.returncode == 1 and "FAILS" in failed.stdout


def test_consistency_between_a_checkpoint_and_now_and_the_older_form_still_works(
    store: str, tmp_path: Path
) -> None:
    old = tmp_path / "old.jsonl"
    assert run("checkpoint", "--store", store, "--append", str(old)).returncode == 0
    assert run("demo", "--store", store).returncode == 0
    new = tmp_path / "new.jsonl"
    assert run("checkpoint", "--store", store, "--append", str(new)).returncode == 0

    printed = run("consistency", "--old", str(old), "--new", str(new), "--store", store)
    assert printed.returncode == 0, printed.stderr
    proof = json.loads(printed.stdout)
    assert proof["old_size"] == json.loads(old.read_text())["position"]
    assert stand_alone(tmp_path, printed.stdout).returncode == 0
    by_size = run("consistency", "--old", "2", "--store", store)
    assert by_size.returncode == 0 and json.loads(by_size.stdout)["old_size"] == 2

    older_form = run("consistency", str(old), str(new), "--store", store)
    assert older_form.returncode == 0 and "consistent" in older_form.stdout

    bad = run("consistency", "--old", str(old), str(old), "--store", store)
    assert bad.returncode == 2


def test_an_unsealed_position_is_one_line_and_exit_2(store: str) -> None:
    refused = run("prove", "--position", "1", "--store", store)
    assert refused.returncode == 2 and "not sealed" in refused.stderr
