"""Run bundles: export --bundle, then verify-bundle with no store; each tampering is named."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from auditledger.adapters import Ledger
from tests.support.chain_support import Token, record_history
from tests.support.cli_runner import run_cli
from tests.support.keys import write_key

HISTORY = [Token((1, 2), "completed", True), Token((3,), "failed", True), Token((), "open", False)]


@pytest.fixture
def store(shared_url: str) -> str:
    record_history(shared_url, HISTORY, seed=1)
    # a second run stays out of the bundle
    record_history(shared_url, HISTORY, seed=2, prefix="other")
    return shared_url


def export(url: str, run: str, directory: Path, *extra: str) -> None:
    done = run_cli(
        "export",
        "--run",
        run,
        "--bundle",
        str(directory),
        "--with-payloads",
        "--store",
        url,
        *extra,
    )
    assert done.returncode == 0, done.stderr


def verify(directory: Path, *extra: str) -> tuple[int, str]:
    done = run_cli("verify-bundle", str(directory), *extra)
    return done.returncode, done.stdout + done.stderr


def refresh_manifest(directory: Path) -> None:
    """What a forger without the key can do: make every file hash match again."""
    manifest = json.loads((directory / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        entry["sha256"] = hashlib.sha256((directory / name).read_bytes()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


@pytest.fixture
def bundle(store: str, tmp_path: Path) -> Path:
    with Ledger.open(store) as ledger:
        ledger.catch_up()
    run = run_of(store)
    key = tmp_path / "key"
    key.write_bytes(b"bundle secret")
    export(store, run, tmp_path / "bundle", "--key-file", str(key))
    moved = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(tmp_path / "bundle", moved)
    shutil.rmtree(tmp_path / "bundle")
    if store.startswith("sqlite:///"):
        shutil.rmtree(store[len("sqlite:///") :])  # the store is gone: verify needs none
    return moved


def run_of(url: str) -> str:
    with Ledger.open(url) as ledger, ledger.landscape_engine.connect() as conn:
        return str(
            conn.execute(text("SELECT run_id FROM runs ORDER BY started_at, run_id")).first()[0]
        )


def test_a_bundle_verifies_with_no_store_and_its_key(bundle: Path) -> None:
    code, out = verify(bundle, "--key-file", str(bundle.parent.parent / "key"))
    assert code == 0, out
    assert "signature checked (hmac-sha256)" in out
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["row_counts"]["runs"] == 1  # the other run is not in it
    assert manifest["row_counts"]["node_states"] == 3
    assert manifest["events"]["count"] == len((bundle / "events.jsonl").read_text().splitlines())


def test_an_edited_row_is_named_even_with_the_file_hashes_refreshed(bundle: Path) -> None:
    path = bundle / "rows" / "node_states.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["status"] = "completed" if rows[0]["status"] != "completed" else "failed"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    refresh_manifest(bundle)
    code, out = verify(bundle)
    assert code == 1
    assert f"row node_states {rows[0]['state_id']}: edited (columns status" in out


def test_a_refreshed_manifest_fails_its_signature(bundle: Path) -> None:
    path = bundle / "rows" / "calls.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))
    refresh_manifest(bundle)
    code, out = verify(bundle, "--key-file", str(bundle.parent.parent / "key"))
    assert code == 1
    assert "signature: manifest.sig does not verify the manifest" in out


def test_a_dropped_row_is_named(bundle: Path) -> None:
    path = bundle / "rows" / "calls.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    dropped = json.loads(lines[0])
    path.write_text("".join(lines[1:]))
    code, out = verify(bundle)
    assert code == 1
    assert f"row calls {dropped['call_id']}: dropped" in out
    assert "file rows/calls.jsonl: sha256" in out


def test_a_dropped_event_is_named(bundle: Path) -> None:
    path = bundle / "events.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    dropped = json.loads(lines[-1])
    path.write_text("".join(lines[:-1]))
    refresh_manifest(bundle)
    code, out = verify(bundle)
    assert code == 1
    assert f"event at position {dropped['position']}: dropped" in out


def test_an_edited_event_fails_its_inclusion_proof(bundle: Path) -> None:
    path = bundle / "events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    state = base64.b64decode(events[1]["state"]).replace(b'"node"', b'"edon"')
    assert state != base64.b64decode(events[1]["state"])
    events[1]["state"] = base64.b64encode(state).decode()
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    refresh_manifest(bundle)
    code, out = verify(bundle)
    assert code == 1
    assert f"event at position {events[1]['position']} (leaf {events[1]['leaf_index']})" in out


def test_a_swapped_payload_is_named(bundle: Path) -> None:
    first, second = sorted((bundle / "payloads").iterdir())[:2]
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)
    refresh_manifest(bundle)
    code, out = verify(bundle)
    assert code == 1
    assert f"payload {first.name}: the file hashes to {second.name}" in out


def test_an_ed25519_signed_bundle_checks_with_the_public_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store"
    record_history(url, HISTORY, seed=3)
    with Ledger.open(url) as ledger:
        ledger.catch_up()
    private, public = write_key(tmp_path, "bundle")
    export(url, run_of(url), tmp_path / "b", "--key-file", str(private))
    code, out = verify(tmp_path / "b", "--key-file", str(public))
    assert code == 0, out
    assert "signature checked (ed25519)" in out
    refused = run_cli(
        "export", "--run", run_of(url), "--bundle", str(tmp_path / "c"),
        "--key-file", str(public), "--store", url,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "needs the Ed25519 private key" in refused.stderr
    assert not (tmp_path / "c").exists()


def test_a_payload_removed_with_its_manifest_entries_is_named(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    digest = manifest["payloads"]["included"].pop(0)
    del manifest["files"][f"payloads/{digest}"]
    (bundle / "payloads" / digest).unlink()
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    code, out = verify(bundle)
    assert code == 1
    assert f"payload {digest}: named by the events, neither in the bundle nor absent" in out


def test_a_payload_the_store_lost_before_export_is_named_missing_not_erased(
    store: str, tmp_path: Path
) -> None:
    from auditledger.adapters.tamper.raw_log import RawLog

    with Ledger.open(store) as ledger:
        ledger.catch_up()
    run = run_of(store)
    export(store, run, tmp_path / "whole")
    manifest = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    digest = manifest["payloads"]["included"][0]
    with RawLog.open(store) as log, log.payloads_engine.begin() as conn:
        conn.execute(text("DELETE FROM payloads WHERE hash = :h"), {"h": digest})
    export(store, run, tmp_path / "lost")
    listed = json.loads((tmp_path / "lost" / "manifest.json").read_text())["payloads"]
    assert (listed["missing"], listed["erased"], listed["purged"]) == ([digest], [], [])
    code, out = verify(tmp_path / "lost")
    assert code == 1
    assert f"payload {digest}: missing from the store at export" in out
    assert "(0 erased, 0 purged, 1 missing)" in out
