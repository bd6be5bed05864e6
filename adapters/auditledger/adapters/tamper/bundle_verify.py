"""Check a run bundle offline: no store, only the bundle directory (docs/tamper-evidence.md,
"Run bundles").

The checks, each finding named: the manifest's signature (with a key), every listed file's
sha256, the events file against the manifest's positions (a dropped or added event), every
event's inclusion proof against the manifest's root, the rows the events project to (decoded
with the ledger's own mapper, folded into an in-memory SQLite landscape) against the rows
files, and every payload file against its digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from auditledger.adapters.storage.event_store import LedgerApplication
from auditledger.adapters.tamper.chain_format import digests_in
from auditledger.adapters.tamper.merkle import leaf_bytes
from auditledger.adapters.tamper.merkle_verify import leaf_hash, verify_inclusion
from auditledger.adapters.tamper.signing import Key
from auditledger.domain.payload_status import PayloadStatus
from auditledger.projections import queries, schema
from auditledger.projections.landscape import KEYS, utc
from auditledger.projections.runner import Projector
from auditledger.projections.tables import LANDSCAPE_TABLES

BUNDLE_FORMAT = "auditledger-bundle/v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
EVENTS = "events.jsonl"
ROWS_DIR = "rows"
PAYLOADS_DIR = "payloads"
TABLE_KEYS = {table.name: KEYS[table] for table in LANDSCAPE_TABLES}
WHY = (PayloadStatus.ERASED, PayloadStatus.PURGED, PayloadStatus.MISSING)
"""Why a payload is absent from a bundle: each a manifest list (a subset of `absent`)."""


def plain(value: Any) -> Any:
    """A timestamp as naive UTC ISO 8601 (PostgreSQL serves it aware, SQLite naive)."""
    return utc(value).isoformat() if isinstance(value, datetime) else value


def row_line(row: dict[str, Any]) -> str:
    """One landscape row as its bundle line: canonical JSON (sorted keys, no spaces)."""
    return json.dumps({k: plain(v) for k, v in row.items()}, sort_keys=True, separators=(",", ":"))


def manifest_message(manifest_bytes: bytes) -> bytes:
    return f"{BUNDLE_FORMAT}\n".encode("ascii") + manifest_bytes


def sign_manifest(key: Key, manifest_bytes: bytes) -> str:
    message = manifest_message(manifest_bytes)
    if key.kind == "hmac-sha256":
        return "hmac-sha256:" + hmac.new(key.secret, message, hashlib.sha256).hexdigest()
    if key.private is None:
        raise ValueError("an Ed25519 public key checks signatures; signing needs the private key")
    signature: bytes = key.private.sign(message)
    return "ed25519:" + signature.hex()


def signature_holds(key: Key, manifest_bytes: bytes, signature: str) -> bool:
    kind, _, value = signature.strip().partition(":")
    if kind != key.kind or not value:
        return False
    message = manifest_message(manifest_bytes)
    if key.kind == "hmac-sha256":
        expected = hmac.new(key.secret, message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, value)
    from cryptography.exceptions import InvalidSignature

    try:
        key.public.verify(bytes.fromhex(value), message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass
class BundleReport:
    events: int = 0
    rows: int = 0
    payloads: int = 0
    absent: dict[str, int] = field(default_factory=dict)
    """why -> absent payloads (erased, purged, missing), as the manifest says."""
    signature: str = "not checked (no --key-file)"
    findings: list[str] = field(default_factory=list)
    hashed: dict[str, str | None] = field(default_factory=dict, repr=False)
    """file name -> its sha256 (None: missing), each file read once."""

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_bundle(directory: Path, key: Key | None = None) -> BundleReport:
    report = BundleReport()
    try:
        manifest_bytes = (directory / MANIFEST).read_bytes()
        manifest = json.loads(manifest_bytes)
    except (OSError, ValueError) as error:
        report.findings.append(f"manifest: cannot be read as JSON: {error}")
        return report
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        report.findings.append(f"manifest: not an {BUNDLE_FORMAT} manifest")
        return report
    _check_signature(directory, manifest_bytes, key, report)
    _check_files(directory, manifest, report)
    events = _check_events(directory, manifest, report)
    _check_rows(directory, manifest, events, report)
    _check_payloads(directory, manifest, events, report)
    return report


def _check_signature(
    directory: Path, manifest_bytes: bytes, key: Key | None, r: BundleReport
) -> None:
    if key is None:
        return
    try:
        signature = (directory / SIGNATURE).read_text(encoding="ascii")
    except (OSError, ValueError):
        r.signature = "missing"
        r.findings.append(f"signature: {SIGNATURE} is missing or unreadable")
        return
    if signature_holds(key, manifest_bytes, signature):
        r.signature = f"checked ({key.kind})"
    else:
        r.signature = "BAD"
        r.findings.append(f"signature: {SIGNATURE} does not verify the manifest with this key")


def _sha256_file(path: Path | str) -> str | None:
    try:
        with open(path, "rb") as source:
            return hashlib.sha256(source.read()).hexdigest()
    except OSError:
        return None


def _check_files(directory: Path, manifest: dict[str, Any], r: BundleReport) -> None:
    files: dict[str, Any] = manifest.get("files", {})
    for name, entry in sorted(files.items()):
        digest = r.hashed[name] = _sha256_file(os.path.join(directory, name))
        if digest is None:
            r.findings.append(f"file {name}: missing")
        elif digest != entry.get("sha256"):
            r.findings.append(
                f"file {name}: sha256 {digest} is not the manifest's {entry.get('sha256')}"
            )
    listed = set(files) | {MANIFEST, SIGNATURE}
    present = {
        os.path.relpath(os.path.join(folder, name), directory).replace(os.sep, "/")
        for folder, _, names in os.walk(directory)
        for name in names
    }
    for name in sorted(present - listed):
        r.findings.append(f"file {name}: not listed in the manifest")


def _check_events(
    directory: Path, manifest: dict[str, Any], r: BundleReport
) -> list[dict[str, Any]]:
    tree_size = int(manifest["tree_size"])
    root = bytes.fromhex(manifest["root_hash"])
    wanted = [int(p) for p in manifest["events"]["positions"]]
    events: list[dict[str, Any]] = []
    try:
        lines = (directory / EVENTS).read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for number, line in enumerate(lines, start=1):
        try:
            event = json.loads(line)
            state = base64.b64decode(event["state"], validate=True)
            leaf = leaf_bytes(
                int(event["position"]),
                event["topic"],
                event["originator"],
                int(event["version"]),
                state,
            )
            path = [bytes.fromhex(h) for h in event["audit_path"]]
            index = int(event["leaf_index"])
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            r.findings.append(f"event on line {number} of {EVENTS}: unreadable ({error!r})")
            continue
        if not verify_inclusion(index, tree_size, leaf_hash(leaf), path, root):
            r.findings.append(
                f"event at position {event['position']} (leaf {index}): its inclusion proof "
                "does not lead to the manifest's root (modified event or proof)"
            )
        event["state_bytes"] = state
        events.append(event)
    found = [int(e["position"]) for e in events]
    r.events = len(found)
    if found != wanted:
        present, listed = set(found), set(wanted)
        for position in sorted(listed - present):
            r.findings.append(f"event at position {position}: dropped (the manifest lists it)")
        for position in sorted(present - listed):
            r.findings.append(
                f"event at position {position}: added (the manifest does not list it)"
            )
        if present == listed:
            r.findings.append(f"{EVENTS}: events out of the manifest's order")
    if int(manifest["events"]["count"]) != len(wanted):
        r.findings.append("manifest: the event count does not match its positions")
    return events


class _BundleEvents:
    """EventSource over the bundle's events, decoded with the ledger's own mapper."""

    def __init__(self, decoded: list[tuple[int, Any]]) -> None:
        self.decoded = decoded

    def read(self, after: int, limit: int, stop: int | None = None) -> Sequence[tuple[int, Any]]:
        chosen = (e for e in self.decoded if e[0] > after and (stop is None or e[0] <= stop))
        return [e for _, e in zip(range(limit), chosen, strict=False)]

    def last_position(self) -> int:
        return self.decoded[-1][0] if self.decoded else 0


def project(events: Iterable[dict[str, Any]], run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The landscape rows of the run the events project to (in an in-memory SQLite landscape)."""
    app = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    try:
        decoded = [
            (
                int(e["position"]),
                app.mapper.to_domain_event(
                    StoredEvent(
                        originator_id=UUID(e["originator"]),
                        originator_version=int(e["version"]),
                        topic=e["topic"],
                        state=e["state_bytes"],
                    )
                ),
            )
            for e in sorted(events, key=lambda e: int(e["position"]))
        ]
        schema.ensure(engine, "the bundle's in-memory landscape")
        Projector(engine, _BundleEvents(decoded)).catch_up(chunk_size=5000)
        with engine.connect() as conn:
            yield from queries.run_rows(conn, run_id)
    finally:
        engine.dispose()
        app.close()


def _check_rows(
    directory: Path, manifest: dict[str, Any], events: list[dict[str, Any]], r: BundleReport
) -> None:
    expected: dict[str, dict[Any, str]] = {name: {} for name in TABLE_KEYS}
    try:
        for table, row in project(events, manifest["run_id"]):
            expected[table][_key(table, row)] = row_line(row)
    except Exception as error:  # an undecodable or unprojectable event is a finding
        r.findings.append(
            f"rows: the bundle's events do not project: {type(error).__name__}: {error}"
        )
        return
    counts: dict[str, int] = manifest.get("row_counts", {})
    for table in TABLE_KEYS:
        given: dict[Any, str] = {}
        try:
            lines = (
                (directory / ROWS_DIR / f"{table}.jsonl").read_text(encoding="utf-8").splitlines()
            )
        except OSError:
            lines = []
        for line in lines:
            row = json.loads(line)
            given[_key(table, row)] = row_line(row)
        r.rows += len(given)
        if counts.get(table, 0) != len(lines):
            r.findings.append(
                f"rows {table}: {len(lines)} rows, the manifest says {counts.get(table, 0)}"
            )
        for key in expected[table].keys() - given.keys():
            r.findings.append(f"row {table} {key}: dropped (the events project it)")
        for key in given.keys() - expected[table].keys():
            r.findings.append(f"row {table} {key}: added (no event projects it)")
        for key in given.keys() & expected[table].keys():
            if given[key] != expected[table][key]:
                r.findings.append(
                    f"row {table} {key}: edited ({_changed(given[key], expected[table][key])})"
                )


def _key(table: str, row: dict[str, Any]) -> Any:
    names = TABLE_KEYS[table]
    return row.get(names[0]) if len(names) == 1 else tuple(row.get(n) for n in names)


def _changed(given: str, expected: str) -> str:
    a, b = json.loads(given), json.loads(expected)
    columns = sorted(c for c in a.keys() | b.keys() if a.get(c) != b.get(c))
    return "columns " + ", ".join(
        f"{c}: {a.get(c)!r} where the events give {b.get(c)!r}" for c in columns
    )


def _check_payloads(
    directory: Path, manifest: dict[str, Any], events: list[dict[str, Any]], r: BundleReport
) -> None:
    listed = manifest.get("payloads", {})
    if listed.get("with_payloads"):
        named = set(digests_in(e["state_bytes"] for e in events))
        for digest in sorted(
            named - set(listed.get("included", [])) - set(listed.get("absent", []))
        ):
            r.findings.append(
                f"payload {digest}: named by the events, neither in the bundle nor absent"
            )
    _check_absent(listed, r)
    for digest in listed.get("included", []):
        name = f"{PAYLOADS_DIR}/{digest}"
        found = r.hashed[name] if name in r.hashed else _sha256_file(directory / name)
        r.payloads += 1
        if found is None:
            r.findings.append(f"payload {digest}: missing from the bundle")
        elif found != digest:
            r.findings.append(f"payload {digest}: the file hashes to {found} (swapped or edited)")


def _check_absent(listed: dict[str, Any], r: BundleReport) -> None:
    """Erased and purged payloads are counted, never failed; one the store had lost without a
    purge or an erasure is a finding, as verify-chain makes it one. (A bundle written before
    these lists existed says only `absent`.)"""
    absent = set(listed.get("absent", []))
    for why in WHY:
        if why.value not in listed:
            continue
        digests = listed[why.value]
        r.absent[why.value] = len(digests)
        for digest in digests:
            if digest not in absent:
                r.findings.append(f"payload {digest}: listed as {why.value} but not as absent")
            elif why is PayloadStatus.MISSING:
                r.findings.append(
                    f"payload {digest}: missing from the store at export (neither purged nor "
                    "erased)"
                )
