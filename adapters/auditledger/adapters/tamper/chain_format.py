"""The hash chain over the event log, byte for byte, and what a verifier can find wrong.

Each stored event at log position p extends the head of the log:

    chain_hash(p) = sha256( "auditledger-chain-v1" 0x00
                            || prev                  32 bytes: chain_hash of the previous event
                            || u64(position)
                            || u64(len(topic))       || topic (UTF-8)
                            || u64(len(originator))  || originator (UTF-8)
                            || u64(version)
                            || u64(len(state))       || state (the stored bytes, as stored) )

u64 is 8 bytes, big-endian, unsigned. The head of an empty log is GENESIS (32 zero bytes,
position 0). The originator is the id as eventsourcing stores it in SQLite: a UUID as 32
lowercase hex digits (PostgreSQL's uuid column is rendered the same way); any other stored
text is taken as it is, so an altered id never hashes like the original.

The payload hashes are fields of the stored state, so the chain also covers payload bytes:
whoever checks `sha256(bytes) == digest` for each digest an event names has checked them.
A digest is named by a field ending `_hash` or `_ref`, or listed in a field ending `_hashes`
(a call's `attachment_hashes`: its HTTP bodies, multipart parts, raw lines), so every byte
the ledger stores for a call is under the chain. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from auditledger.domain.errors import InvalidCheckpoint

DOMAIN = b"auditledger-chain-v1\x00"
GENESIS = bytes(32)
CHECKPOINT_FORMAT = "auditledger-checkpoint/v1"

_HEAD = struct.Struct(">32sQQ")
_LEN = struct.Struct(">Q")
_TAIL = struct.Struct(">QQ")
_DIGEST_FIELD = re.compile(rb'"[a-z_]*_(?:hash|ref)":"([0-9a-f]{64})"')
_DIGEST_LIST = re.compile(rb'"[a-z_]*_hashes":\[((?:"[0-9a-f]{64}",?)*)\]')
_LISTED = b'_hashes":["'
_HEX = re.compile(rb"[0-9a-f]{64}")
_NAMING_FIELD = rb'"([a-z_]*_(?:hash|ref))":"%s"|"([a-z_]*_hashes)":\[(?:"[0-9a-f]{64}",)*"%s"'
_CALL_ID = re.compile(rb'"call_id":"((?:[^"\\]|\\.)*)"')


def originator_text(originator_id: object) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else str(originator_id)


def link(
    prev: bytes, position: int, topic: str, originator: str, version: int, state: bytes
) -> bytes:
    """The chain hash of the event at `position`, given the previous chain hash."""
    topic_bytes = topic.encode("utf-8")
    originator_bytes = originator.encode("utf-8")
    return hashlib.sha256(
        b"".join(
            (
                DOMAIN,
                _HEAD.pack(prev, position, len(topic_bytes)),
                topic_bytes,
                _LEN.pack(len(originator_bytes)),
                originator_bytes,
                _TAIL.pack(version, len(state)),
                state,
            )
        )
    ).digest()


def payload_digests(state: bytes) -> set[str]:
    """The payload digests an event's stored state names (fields ending _hash or _ref, and
    the lists in fields ending _hashes)."""
    return {match.decode("ascii") for match in _named(state)}


def digests_in(states: Iterable[bytes]) -> list[str]:
    """Every payload digest the given states name, repeats included (single fields first)."""
    joined = b"\x00".join(states)
    return [match.decode("ascii") for match in _named(joined)]


def _named(data: bytes) -> list[bytes]:
    found: list[bytes] = _DIGEST_FIELD.findall(data)
    if _LISTED in data:  # the common event names no list: one substring test, no second scan
        for listed in _DIGEST_LIST.findall(data):
            found.extend(_HEX.findall(listed))
    return found


def naming(state: bytes, digest: str) -> str:
    """Which field of an event names a digest, and the call's id when the event is a call:
    'attachment_hashes of call 3f2...', 'request_hash', ... (for a finding's words)."""
    escaped = re.escape(digest.encode("ascii"))
    field = re.search(_NAMING_FIELD % (escaped, escaped), state)
    name = next((g.decode("ascii") for g in field.groups() if g), "a field") if field else "a field"
    call = _CALL_ID.search(state)
    return f"{name} of call {call.group(1).decode('utf-8', 'replace')}" if call else name


FindingKind = Literal[
    "modified",
    "deleted",
    "inserted",
    "reordered",
    "chain-modified",
    "truncated",
    "rewritten",
    "payload-tampered",
    "payload-missing",
    "bad-signature",
]


@dataclass(frozen=True)
class Finding:
    """The first broken position and what is wrong there."""

    position: int
    kind: FindingKind
    detail: str

    def __str__(self) -> str:
        return f"position {self.position}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class ChainReport:
    events_checked: int
    head_position: int
    head_hash: str
    sealed_position: int
    unsealed: int
    payloads_checked: int
    payloads_purged: int
    checkpoints_checked: int
    finding: Finding | None
    payloads_erased: int = 0

    @property
    def ok(self) -> bool:
        return self.finding is None


@dataclass(frozen=True)
class Checkpoint:
    """A log head someone wrote down: position, chain hash, when; optionally signed."""

    position: int
    chain_hash: str
    timestamp: str
    signature: str | None = None

    def message(self) -> bytes:
        """The bytes a signature covers."""
        return (
            f"{CHECKPOINT_FORMAT}\n{self.position}\n{self.chain_hash}\n{self.timestamp}\n"
        ).encode("ascii")

    def to_json(self) -> str:
        body: dict[str, object] = {
            "format": CHECKPOINT_FORMAT,
            "position": self.position,
            "chain_hash": self.chain_hash,
            "timestamp": self.timestamp,
        }
        if self.signature is not None:
            body["signature"] = self.signature
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str, source: str = "<text>") -> Checkpoint:
        try:
            body = json.loads(line)
        except ValueError as error:
            raise InvalidCheckpoint(source, f"not JSON: {error}") from None
        if not isinstance(body, dict) or body.get("format") != CHECKPOINT_FORMAT:
            raise InvalidCheckpoint(source, f"not an {CHECKPOINT_FORMAT} object")
        position = body.get("position")
        chain_hash = body.get("chain_hash")
        timestamp = body.get("timestamp")
        signature = body.get("signature")
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise InvalidCheckpoint(source, f"position {position!r} is not a whole number >= 0")
        if not isinstance(chain_hash, str) or not re.fullmatch("[0-9a-f]{64}", chain_hash):
            raise InvalidCheckpoint(source, f"chain_hash {chain_hash!r} is not 64 hex digits")
        if not isinstance(timestamp, str):
            raise InvalidCheckpoint(source, f"timestamp {timestamp!r} is not a string")
        if signature is not None and not isinstance(signature, str):
            raise InvalidCheckpoint(source, f"signature {signature!r} is not a string")
        return cls(position, chain_hash, timestamp, signature)


def parse_checkpoints(text: str, source: str) -> list[Checkpoint]:
    """Every checkpoint in a file `auditledger checkpoint --append` wrote (one per line)."""
    found = [
        Checkpoint.from_json(line, f"{source}:{number}")
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if not found:
        raise InvalidCheckpoint(source, "holds no checkpoint")
    return found
