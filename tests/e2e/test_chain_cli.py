"""Tamper evidence through the installed `auditledger` entry point, as an operator uses it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from uuid import UUID

import pytest

from tests.support.cli_runner import run_cli as run


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("recorded") / "audit"
    assert run("demo", "--store", f"sqlite:///{directory}").returncode == 0
    return directory


@pytest.fixture
def store(recorded: Path, tmp_path: Path) -> str:
    """A copy of a recorded store: the verifier needs nothing but the files."""
    shutil.copytree(recorded, tmp_path / "audit")
    return f"sqlite:///{tmp_path}/audit"


def test_a_signed_checkpoint_verifies_and_a_flipped_byte_fails_at_its_position(
    store: str, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "kept-elsewhere.jsonl"
    key = {"AUDIT_KEY": "correct horse battery staple"}
    made = run("checkpoint", "--store", store, "--append", str(checkpoints),
               "--hmac-key-env", "AUDIT_KEY", env=key)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert '"signature":"hmac-sha256:' in made.stdout
    assert checkpoints.read_text().strip() == made.stdout.strip()

    good = run("verify-chain", "--store", store, "--checkpoint", str(checkpoints),
               "--hmac-key-env", "AUDIT_KEY", env=key)  # fmt: skip
    assert good.returncode == 0, good.stdout + good.stderr
    assert "checkpoints: 1 of 1 matched" in good.stdout

    with sqlite3.connect(Path(store[len("sqlite:///") :]) / "events.sqlite3") as db:
        (state,) = db.execute("SELECT state FROM stored_events WHERE rowid = 2").fetchone()
        flipped = state[:20] + bytes([state[20] ^ 1]) + state[21:]
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = 2", (flipped,))
    bad = run("verify-chain", "--store", store, "--checkpoint", str(checkpoints))
    assert bad.returncode == 1
    assert "BROKEN at position 2: modified" in bad.stdout

    landscape_and_chain = run("verify", "--store", store, "--chain")
    assert landscape_and_chain.returncode != 0
    assert "position 2: modified" in landscape_and_chain.stdout


def test_purge_keeps_the_chain_valid_and_verify_counts_purged_payloads(store: str) -> None:
    assert run("checkpoint", "--store", store).returncode == 0
    refused = run("purge", "--store", store, "--older-than", "0s")
    assert refused.returncode == 2 and "minimum retention of 183.00 days" in refused.stderr
    purged = run("purge", "--store", store, "--older-than", "0s",
                 "--override-retention", "--reason", "test data")  # fmt: skip
    assert purged.returncode == 0, purged.stderr
    assert "purged" in purged.stdout and "retention overridden" in purged.stdout

    after = run("verify", "--store", store, "--chain")
    assert after.returncode == 0, after.stdout + after.stderr
    assert " 0 purged" not in after.stdout and "purged (hash kept" in after.stdout


def test_consistency_holds_between_an_older_and_a_newer_checkpoint(
    store: str, tmp_path: Path
) -> None:
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    assert run("checkpoint", "--store", store, "--append", str(old)).returncode == 0
    assert run("demo", "--store", store).returncode == 0
    assert run("checkpoint", "--store", store, "--append", str(new)).returncode == 0

    checked = run("consistency", str(old), str(new), "--store", store)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "consistent" in checked.stdout
    assert run("consistency", str(new), str(old), "--store", store).returncode == 2


def test_export_ends_with_the_checkpoint_of_the_log_head(store: str, tmp_path: Path) -> None:
    landscape = Path(store[len("sqlite:///") :]) / "landscape.sqlite3"
    with sqlite3.connect(landscape) as db:
        (run_id,) = db.execute("SELECT run_id FROM runs").fetchone()
    exported = run("export", "--store", store, "--run", run_id)
    assert exported.returncode == 0, exported.stderr
    assert (
        exported.stdout.strip()
        .splitlines()[-1]
        .startswith('{"table": "checkpoint", "row": {"format": "auditledger-checkpoint/v1"')
    )


def test_a_missing_store_or_a_bad_checkpoint_file_is_one_line_and_exit_2(
    tmp_path: Path, store: str
) -> None:
    missing = run("verify-chain", "--store", f"sqlite:///{tmp_path}/nowhere")
    assert missing.returncode == 2 and "no event log" in missing.stderr
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not a checkpoint\n")
    bad = run("verify-chain", "--store", store, "--checkpoint", str(junk))
    assert bad.returncode == 2 and "junk.jsonl:1" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_erase_a_run_keeps_the_chain_and_the_checkpoint_valid_and_counts_erased(
    store: str, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "kept.jsonl"
    assert run("checkpoint", "--store", store, "--append", str(checkpoints)).returncode == 0
    with sqlite3.connect(Path(store.removeprefix("sqlite:///")) / "events.sqlite3") as db:
        (originator,) = db.execute(
            "SELECT originator_id FROM stored_events WHERE topic = ?",
            ("auditledger:Run.RunStarted:v1",),
        ).fetchone()
    run_id = str(UUID(str(originator)))
    refused = run("erase", "--store", store, "--run", run_id, "--reason", "gdpr")
    assert refused.returncode == 2 and "minimum retention" in refused.stderr
    erased = run("erase", "--store", store, "--run", run_id, "--reason", "gdpr",
                 "--override-retention")  # fmt: skip
    assert erased.returncode == 0, erased.stderr
    assert "retention overridden" in erased.stdout

    after = run("verify", "--store", store, "--chain")
    assert after.returncode == 0, after.stdout + after.stderr
    assert " 0 erased" not in after.stdout and "erased (by erase" in after.stdout
    chain = run("verify-chain", "--store", store, "--checkpoint", str(checkpoints))
    assert chain.returncode == 0, chain.stdout + chain.stderr
    assert "checkpoints: 1 of 1 matched" in chain.stdout
