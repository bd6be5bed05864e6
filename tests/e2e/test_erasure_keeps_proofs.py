"""Erasure, then everything an outsider checks still holds, through the installed entry point:
a run recorded with calls and payloads, sealed and checkpointed, then `erase --run`; after it
`verify`, `prove` (against the checkpoint taken before), `consistency` and `verify-bundle`
(of bundles exported before and after) all pass, and erased bytes are reported as erased."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from auditledger.adapters import Ledger
from auditledger.adapters.tamper import merkle_verify
from tests.support.cli_runner import run_cli as run
from tests.support.keys import write_key

ORIGIN = "example.com/erasure"
REASON = "data subject request 7"


@pytest.fixture
def store(shared_url: str) -> str:
    for _ in range(2):  # two runs: the second one's bytes must survive the first one's erasure
        assert run("demo", "--store", shared_url).returncode == 0
    return shared_url


def first_run(url: str) -> tuple[str, str, str]:
    """The first run's id, one of its states that made a call, and that call's id."""
    with Ledger.open(url) as ledger, ledger.landscape_engine.connect() as conn:
        run_id, state_id, call_id = conn.execute(
            text(
                "SELECT r.run_id, s.state_id, c.call_id FROM runs r "
                "JOIN node_states s ON s.run_id = r.run_id "
                "JOIN calls c ON c.state_id = s.state_id "
                "ORDER BY r.started_at, r.run_id, c.call_id"
            )
        ).first()
    return str(run_id), str(state_id), str(call_id)


def stand_alone(directory: Path, printed: str) -> subprocess.CompletedProcess[str]:
    """merkle_verify.py copied out and run with no auditledger on the path."""
    directory.mkdir(exist_ok=True)
    copy = directory / "merkle_verify.py"
    copy.write_text(Path(merkle_verify.__file__).read_text(encoding="utf-8"), encoding="utf-8")
    (directory / "proofs.json").write_text(printed, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-I", str(copy), "proofs.json"],
        capture_output=True,
        text=True,
        cwd=directory,
        timeout=60,
    )


def ok(*args: str) -> str:
    done = run(*args)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


def test_after_erasing_a_run_verify_prove_consistency_and_bundles_all_hold(
    store: str, tmp_path: Path
) -> None:
    run_id, state_id, call_id = first_run(store)
    log_pem, log_pub = write_key(tmp_path, "log")
    hmac_key = tmp_path / "bundle.key"
    hmac_key.write_bytes(b"bundle secret")
    note = tmp_path / "before.note"
    ok("checkpoint", "--store", store, "--note", str(note), "--origin", ORIGIN,
       "--key-file", str(log_pem), "--key-name", "log")  # fmt: skip
    heads = tmp_path / "before.jsonl"
    ok("checkpoint", "--store", store, "--append", str(heads))
    _, size_line, root_line, *_ = note.read_text(encoding="utf-8").split("\n")
    old_size, old_root = int(size_line), base64.b64decode(root_line).hex()
    ok("export", "--run", run_id, "--bundle", str(tmp_path / "before"), "--with-payloads",
       "--key-file", str(hmac_key), "--store", store)  # fmt: skip
    before = json.loads((tmp_path / "before" / "manifest.json").read_text(encoding="utf-8"))
    assert before["payloads"]["included"] and not before["payloads"]["absent"]

    erased = ok("erase", "--run", run_id, "--reason", REASON, "--override-retention",
                "--store", store)  # fmt: skip
    assert "retention overridden" in erased

    # verify: the landscape and the chain pass; the bytes count as erased, nothing else
    checked = run("verify", "--chain", "--store", store, "--checkpoint", str(heads))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "missing" not in checked.stdout.replace("0 missing", "")
    assert "tampered" not in checked.stdout.replace("0 tampered", "")
    erased_count = int(checked.stdout.split(" erased")[0].rsplit(" ", 1)[-1])
    assert erased_count >= 1
    witnessed = run("verify-chain", "--store", store, "--checkpoint", str(note),
                    "--witness-key", str(log_pub))  # fmt: skip
    assert witnessed.returncode == 0, witnessed.stdout + witnessed.stderr

    # prove: the erased run's events, against the tree the checkpoint before named
    for flag, value in (("--call", call_id), ("--state", state_id)):
        printed = ok("prove", flag, value, "--size", str(old_size), "--store", store)
        proofs = json.loads(printed)["proofs"]
        assert proofs and {p["root_hash"] for p in proofs} == {old_root}
        assert stand_alone(tmp_path / f"auditor{flag}", printed).returncode == 0
        now = ok("prove", flag, value, "--store", store)
        assert stand_alone(tmp_path / f"auditor{flag}-now", now).returncode == 0

    ok("seal", "--store", store)
    consistency = ok("consistency", "--old", str(heads), "--store", store)
    joined = json.loads(consistency)
    assert joined["old_size"] == old_size and joined["old_root"] == old_root
    assert joined["new_size"] > old_size  # the ErasureRecorded event was appended and sealed
    assert stand_alone(tmp_path / "auditor-consistency", consistency).returncode == 0

    # bundles: one exported after the erasure names the erased payloads; the old one holds
    ok("export", "--run", run_id, "--bundle", str(tmp_path / "after"), "--with-payloads",
       "--key-file", str(hmac_key), "--store", store)  # fmt: skip
    after = json.loads((tmp_path / "after" / "manifest.json").read_text(encoding="utf-8"))
    assert after["payloads"]["absent"]
    assert sorted(after["payloads"]["erased"]) == sorted(after["payloads"]["absent"])
    assert after["root_hash"] != old_root
    for bundle in ("before", "after"):
        done = run("verify-bundle", str(tmp_path / bundle), "--key-file", str(hmac_key))
        assert done.returncode == 0, done.stdout + done.stderr
    reported = run("verify-bundle", str(tmp_path / "after")).stdout
    assert f"{len(after['payloads']['erased'])} erased" in reported
    assert "0 missing" in reported or "missing" not in reported
