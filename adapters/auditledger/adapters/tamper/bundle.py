"""Write a run bundle: the run's raw events with inclusion proofs against one sealed root, the
landscape rows they project to, optionally the payloads, and a signed manifest
(docs/tamper-evidence.md, "Run bundles"; checked offline by bundle_verify.py)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import text

from auditledger.adapters.tamper.bundle_verify import (
    BUNDLE_FORMAT,
    EVENTS,
    MANIFEST,
    PAYLOADS_DIR,
    ROWS_DIR,
    SIGNATURE,
    TABLE_KEYS,
    WHY,
    row_line,
    sign_manifest,
)
from auditledger.adapters.tamper.chain_format import digests_in, originator_text
from auditledger.adapters.tamper.merkle_proofs import Prover
from auditledger.adapters.tamper.raw_log import RawEvent, RawLog, as_bytes
from auditledger.adapters.tamper.signing import Key, checkpoint_of
from auditledger.domain.call_key import call_key_id
from auditledger.domain.payload_status import PayloadStatus, without_bytes

_CHUNK = 500


def aggregate_ids(rows: Iterable[tuple[str, dict[str, Any]]]) -> list[UUID]:
    """The run's aggregates the rows name: the run, its states, operations, batches, call keys."""
    found: dict[UUID, None] = {}
    for table, row in rows:
        for column in ("run_id", "state_id", "operation_id", "batch_id"):
            value = row.get(column)
            if value is not None and table in _OWNERS[column]:
                found[UUID(str(value))] = None
        if table == "calls":
            found[call_key_id(row["call_id"])] = None
    return list(found)


_OWNERS = {
    "run_id": ("runs",),
    "state_id": ("node_states",),
    "operation_id": ("operations",),
    "batch_id": ("batches",),
}


def events_of(log: RawLog, originators: list[UUID], upto: int) -> list[RawEvent]:
    """Every stored event of the given aggregates at or before position `upto`, in log order."""
    postgres = log.events_engine.dialect.name == "postgresql"
    column, table = log.position_column, log.events_table
    found: list[RawEvent] = []
    with log.events_engine.connect() as conn:
        for start in range(0, len(originators), _CHUNK):
            chunk = originators[start : start + _CHUNK]
            names = {f"o{n}": (str(o) if postgres else o.hex) for n, o in enumerate(chunk)}
            statement = text(
                f"SELECT {column}, topic, originator_id, originator_version, state FROM {table} "
                f"WHERE originator_id IN ({', '.join(':' + n for n in names)}) "
                f"AND {column} <= :upto"
            )
            for position, topic, originator, version, state in conn.execute(
                statement, {**names, "upto": upto}
            ):
                found.append(
                    RawEvent(
                        int(position),
                        topic,
                        originator_text(originator),
                        int(version),
                        as_bytes(state),
                    )
                )
    found.sort(key=lambda e: e.position)
    return found


def write_bundle(
    log: RawLog,
    run_id: str,
    rows: list[tuple[str, dict[str, Any]]],
    upto: int,
    directory: Path,
    *,
    key: Key | None = None,
    with_payloads: bool = False,
) -> dict[str, Any]:
    """Write the bundle of a run whose landscape rows (as of log position `upto`) are `rows`.
    Seals first; returns the manifest."""
    head = log.seal()
    events = events_of(log, aggregate_ids(rows), min(upto, head.position))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ROWS_DIR).mkdir(exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    with Prover.over(log) as prover:
        tree_size = prover.size_at(head.position) if head.position else 0
        lines = []
        root = ""
        for event in events:
            proof = prover.inclusion(event.position, tree_size)
            root = proof.root_hash
            lines.append(
                json.dumps(
                    {
                        "position": event.position,
                        "topic": event.topic,
                        "originator": event.originator,
                        "version": event.version,
                        "state": base64.b64encode(event.state).decode("ascii"),
                        "leaf_index": proof.leaf_index,
                        "audit_path": proof.audit_path,
                    },
                    separators=(",", ":"),
                )
            )
    files[EVENTS] = _write(directory / EVENTS, lines)
    counts = {}
    for table in TABLE_KEYS:
        table_lines = [row_line(row) for name, row in rows if name == table]
        counts[table] = len(table_lines)
        files[f"{ROWS_DIR}/{table}.jsonl"] = _write(
            directory / ROWS_DIR / f"{table}.jsonl", table_lines
        )
    included, absent = _payloads(log, events, directory, files) if with_payloads else ([], {})
    manifest = {
        "format": BUNDLE_FORMAT,
        "run_id": run_id,
        "tree_size": tree_size,
        "root_hash": root,
        "checkpoint": json.loads(checkpoint_of(head, key).to_json()),
        "events": {"file": EVENTS, "count": len(events), "positions": [e.position for e in events]},
        "row_counts": counts,
        "payloads": {
            "with_payloads": with_payloads,
            "included": included,
            "absent": sorted(absent),
            **{status.value: sorted(d for d, s in absent.items() if s is status) for status in WHY},
        },
        "files": files,
    }
    body = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    (directory / MANIFEST).write_bytes(body)
    if key is not None:
        (directory / SIGNATURE).write_text(sign_manifest(key, body) + "\n", encoding="ascii")
    return manifest


def _write(path: Path, lines: list[str]) -> dict[str, Any]:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "lines": len(lines)}


def _payloads(
    log: RawLog, events: list[RawEvent], directory: Path, files: dict[str, dict[str, Any]]
) -> tuple[list[str], dict[str, PayloadStatus]]:
    """The payloads written, and each absent digest with why (erased, purged or missing): the
    events still name it either way."""
    digests = sorted(set(digests_in(e.state for e in events)))
    stored = log.payload_rows(digests)
    (directory / PAYLOADS_DIR).mkdir(exist_ok=True)
    included: list[str] = []
    absent: dict[str, PayloadStatus] = {}
    for digest in digests:
        data, removal = stored.get(digest, (None, False))
        if data is None:
            absent[digest] = without_bytes(False, removal)
            continue
        (directory / PAYLOADS_DIR / digest).write_bytes(data)
        files[f"{PAYLOADS_DIR}/{digest}"] = {"sha256": digest, "bytes": len(data)}
        included.append(digest)
    return included, absent
