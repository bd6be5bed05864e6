"""What became of a payload's bytes: the one vocabulary the store, verify and the chain share.

present: the bytes are there and hash to the digest the events recorded;
purged: the bytes were deleted on purpose (retention), the digest stays in the events;
erased: the bytes were deleted on purpose for a subject (`erase`), the digest stays in the
  events; the store keeps when and why (`Erased`);
missing: no bytes and no purge or erasure (never stored, or lost);
corrupt: bytes are there but hash to another digest (`PayloadCheck.actual` names it).

A row's removal marker is False (never removed), True (purged) or an `Erased` (erased, when
and why): truthy whenever the bytes were deleted on purpose, so a reader that only asks
"purged?" still gets the right answer.
The values are the words stored and printed, so output written with the old strings is unchanged.
This is the one place the domain hashes bytes: a digest is compared, never trusted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class PayloadStatus(StrEnum):
    PRESENT = "present"
    PURGED = "purged"
    MISSING = "missing"
    CORRUPT = "corrupt"
    ERASED = "erased"


SOUND = frozenset({PayloadStatus.PRESENT, PayloadStatus.PURGED, PayloadStatus.ERASED})
"""Statuses no check fails: purged and erased bytes are counted, not failed."""


@dataclass(frozen=True)
class Erased:
    """The marker of erased bytes: when (ISO 8601, UTC), why, and by which erasure."""

    erased_at: str
    reason: str
    erasure_id: str


Removal = bool | Erased
"""False: never removed; True: purged; Erased: erased (truthy, so it reads as purged too)."""


class PayloadCheck(NamedTuple):
    """A payload's status and, when corrupt, the digest its stored bytes give."""

    status: PayloadStatus
    actual: str | None = None


def check(expected_digest: str, data: bytes | None, purged: Removal) -> PayloadCheck:
    """Classify stored bytes against the digest the events recorded (hashes the bytes)."""
    if data is None:
        return PayloadCheck(without_bytes(False, purged))
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_digest:
        return PayloadCheck(PayloadStatus.CORRUPT, actual)
    return PayloadCheck(PayloadStatus.PRESENT)


def classify(expected_digest: str, data: bytes | None, purged: Removal) -> PayloadStatus:
    return check(expected_digest, data, purged).status


def without_bytes(has_bytes: bool, purged: Removal) -> PayloadStatus:
    """The status of a row read without its bytes (corruption needs the bytes to be seen)."""
    if has_bytes:
        return PayloadStatus.PRESENT
    if isinstance(purged, Erased):
        return PayloadStatus.ERASED
    return PayloadStatus.PURGED if purged else PayloadStatus.MISSING
