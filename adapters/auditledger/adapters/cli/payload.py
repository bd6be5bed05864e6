"""`auditledger payload REF [--body]`, and the payloads an export carries.

A payload is printed byte for byte, re-checked against its ref (`ledger.payload`). `--body`
follows the HTTP body ref a call's request or response JSON names (`body: {sha256}`,
docs/calls.md) and prints those bytes instead. A purged, missing or altered payload is one
line on stderr, exit 2; nothing is printed for it.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any

import typer

from auditledger.adapters.cli.common import DEFAULT_STORE, StoreOption, fail, opened
from auditledger.adapters.ledger import Ledger
from auditledger.domain.errors import PayloadMissing

ROW_REFS: Mapping[str, tuple[str, ...]] = {
    "runs": ("config_hash",),
    "node_states": ("input_hash", "output_hash", "context_hash"),
    "operations": ("input_hash", "output_hash"),
    "calls": ("request_ref", "response_ref"),
}
"""The columns of each landscape table that hold a payload ref (context_hash once it exists)."""


def register(app: typer.Typer) -> None:
    app.command("payload")(payload)


def payload(
    ref: Annotated[str, typer.Argument(help="a payload ref (sha256), as explain shows it")],
    body: Annotated[
        bool,
        typer.Option(
            "--body", help="REF is a call's request or response JSON: print the HTTP body it names"
        ),
    ] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Print the bytes of a payload (or, with --body, of the HTTP body a call names)."""
    with opened(store, existing=True) as ledger:
        data = ledger.payload(ref)
        if body:
            data = ledger.payload(body_ref(ref, data))
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def body_ref(ref: str, data: bytes) -> str:
    """The sha256 of the body a call's request or response JSON names, or a one-line exit."""
    try:
        named = json.loads(data)["body"]["sha256"]
    except (ValueError, TypeError, KeyError):
        named = None
    if not isinstance(named, str):
        raise fail(
            f"payload {ref} is not a call's HTTP request or response JSON (no body.sha256): "
            "--body follows only those; print it without --body"
        )
    return named


def named_bodies(data: bytes) -> list[str]:
    """The body refs (whole body, then each multipart part) an HTTP call JSON names; []."""
    try:
        found = json.loads(data)
    except ValueError:
        return []
    ref = found.get("body") if isinstance(found, dict) else None
    if not isinstance(ref, dict):
        return []
    parts = ref.get("parts")
    named = [ref.get("sha256")]
    if isinstance(parts, list):
        named += [p.get("sha256") for p in parts if isinstance(p, dict)]
    return [r for r in named if isinstance(r, str)]


def row_refs(table: str, row: Mapping[str, Any]) -> list[str]:
    return [row[c] for c in ROW_REFS.get(table, ()) if row.get(c) is not None]


def payload_records(
    ledger: Ledger, refs: Iterable[str], calls: Iterable[str] = ()
) -> Iterator[dict[str, Any]]:
    """One record per ref, then per HTTP body named by a call JSON among them (`calls`: the
    refs of call requests and responses): its status (present, purged, missing), size and
    bytes as base64. An altered payload raises PayloadCorrupt: an export never carries bytes
    that do not hash to their ref."""
    queue = list(dict.fromkeys(refs))
    seen, follow = set(queue), set(calls)
    for ref in queue:
        try:
            data: bytes | None = ledger.payload(ref)
            status = "present"
        except PayloadMissing as missing:
            data, status = None, "purged" if missing.purged else "missing"
        if data is not None and ref in follow:
            for named in named_bodies(data):
                if named not in seen:
                    seen.add(named)
                    queue.append(named)
        yield {
            "ref": ref,
            "status": status,
            "size": None if data is None else len(data),
            "base64": None if data is None else base64.b64encode(data).decode("ascii"),
        }
