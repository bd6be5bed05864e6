"""An auditor's copy: verify, verify-chain and explain run read-only and leave every file as it was.

Tests run as root, which ignores file permissions, so a chmod proves nothing here: instead
every file's bytes and mtime are compared before and after, no file may appear, and the
read-only engines are shown to refuse a write.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from auditledger.adapters.storage.engines import build_engine
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.domain.errors import StoreError
from tests.support.cli_runner import run_cli as run


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("recorded") / "audit"
    made = run("demo", "--store", f"sqlite:///{directory}")
    assert made.returncode == 0, made.stderr
    return directory


def _copy(recorded: Path, tmp_path: Path, *, landscape: bool) -> Path:
    copy = tmp_path / "auditor-copy"
    shutil.copytree(recorded, copy)
    if not landscape:
        (copy / "landscape.sqlite3").unlink()
    return copy


def _snapshot(directory: Path) -> dict[str, tuple[int, int, str]]:
    return {
        str(path.relative_to(directory)): (
            path.stat().st_size,
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(directory.rglob("*"))
    }


def _a_run_id(recorded: Path) -> str:
    with sqlite3.connect(recorded / "landscape.sqlite3") as db:
        (run_id,) = db.execute("SELECT run_id FROM runs LIMIT 1").fetchone()
    return str(run_id)


@pytest.mark.parametrize("landscape", [True, False], ids=["with-landscape", "log-only"])
def test_verify_verify_chain_and_explain_leave_a_read_only_copy_unchanged(
    recorded: Path, tmp_path: Path, landscape: bool
) -> None:
    copy = _copy(recorded, tmp_path, landscape=landscape)
    store = f"sqlite:///{copy}"
    before = _snapshot(copy)

    verified = run("verify", "--store", store, "--chain", "--read-only")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK: head" in verified.stdout
    chained = run("verify-chain", "--store", store, "--read-only")
    assert chained.returncode == 0, chained.stdout + chained.stderr
    explained = run("explain", "--store", store, "--run", _a_run_id(recorded), "--read-only")
    assert explained.returncode == 0, explained.stderr
    assert "call 0 http success" in explained.stdout

    assert _snapshot(copy) == before


def test_without_read_only_verify_creates_the_landscape_the_copy_lacked(
    recorded: Path, tmp_path: Path
) -> None:
    """What --read-only prevents (so the test above can fail)."""
    copy = _copy(recorded, tmp_path, landscape=False)
    assert run("verify", "--store", f"sqlite:///{copy}").returncode == 0
    assert (copy / "landscape.sqlite3").exists()


def test_the_read_only_engines_refuse_a_write(recorded: Path, tmp_path: Path) -> None:
    copy = _copy(recorded, tmp_path, landscape=True)
    before = _snapshot(copy)
    engine = build_engine(f"sqlite:///{copy / 'events.sqlite3'}", read_only=True)
    try:
        with pytest.raises(Exception, match=r"readonly"), engine.begin() as conn:
            conn.execute(text("DELETE FROM payloads"))
    finally:
        engine.dispose()
    with RawLog.open(f"sqlite:///{copy}", read_only=True) as log:
        assert log.last_position() > 0
        with pytest.raises((StoreError, Exception)):
            log.seal()
    assert _snapshot(copy) == before


def test_an_edited_or_deleted_http_body_is_named_by_both_verifiers(
    recorded: Path, tmp_path: Path
) -> None:
    copy = _copy(recorded, tmp_path, landscape=True)
    store = f"sqlite:///{copy}"
    with sqlite3.connect(copy / "events.sqlite3") as db:
        state = next(
            state
            for (state,) in db.execute("SELECT state FROM stored_events ORDER BY rowid")
            if b'"attachment_hashes":["' in state
        )
        body = state.split(b'"attachment_hashes":["', 1)[1][:64].decode()
        db.execute("UPDATE payloads SET data = ? WHERE hash = ?", (b"forged", body))

    chained = run("verify-chain", "--store", store)
    assert chained.returncode == 1
    assert "payload-tampered" in chained.stdout and body in chained.stdout
    assert "attachment_hashes of call" in chained.stdout
    verified = run("verify", "--store", store)
    assert verified.returncode == 1
    assert f"attachment {body}: the stored bytes hash to" in " ".join(verified.stdout.split())

    with sqlite3.connect(copy / "events.sqlite3") as db:
        db.execute("DELETE FROM payloads WHERE hash = ?", (body,))
    missing = run("verify-chain", "--store", store)
    assert missing.returncode == 1
    assert "payload-missing" in missing.stdout and "has no row" in missing.stdout


def test_purge_older_than_0d_removes_http_bodies_and_keeps_their_hashes(
    recorded: Path, tmp_path: Path
) -> None:
    copy = _copy(recorded, tmp_path, landscape=True)
    store = f"sqlite:///{copy}"
    assert (
        run("purge", "--store", f"{store}?retention_days=0", "--older-than", "0d").returncode == 0
    )
    with sqlite3.connect(copy / "events.sqlite3") as db:
        states = [row[0] for row in db.execute("SELECT state FROM stored_events")]
        bodies = {
            digest.decode()
            for state in states
            if b'"attachment_hashes":["' in state
            for digest in state.split(b'"attachment_hashes":[', 1)[1].split(b"]", 1)[0].split(b",")
            for digest in [digest.strip(b'"')]
        }
        rows = dict(
            db.execute(
                f"SELECT hash, data FROM payloads WHERE hash IN ({','.join('?' * len(bodies))})",
                sorted(bodies),
            ).fetchall()
        )
    assert bodies and rows == dict.fromkeys(bodies)  # every body's row kept, its bytes gone
    chained = run("verify-chain", "--store", store)
    assert chained.returncode == 0, chained.stdout
    verified = run("verify", "--store", store)
    assert verified.returncode == 0, verified.stdout
