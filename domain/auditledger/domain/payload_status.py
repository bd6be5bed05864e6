"""What became of a payload's bytes: the one vocabulary the store, verify and the chain share.

present: the bytes are there and hash to the digest the events recorded;
purged: the bytes were deleted on purpose (retention), the digest stays in the events;
missing: no bytes and no purge (never stored, or lost);
corrupt: bytes are there but hash to another digest (`PayloadCheck.actual` names it).

The values are the words stored and printed, so output written with the old strings is unchanged.
This is the one place the domain hashes bytes: a digest is compared, never trusted.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import NamedTuple


class PayloadStatus(StrEnum):
    PRESENT = "present"
    PURGED = "purged"
    MISSING = "missing"
    CORRUPT = "corrupt"


SOUND = frozenset({PayloadStatus.PRESENT, PayloadStatus.PURGED})
"""Statuses no check fails: purged bytes are counted, not failed."""


class PayloadCheck(NamedTuple):
    """A payload's status and, when corrupt, the digest its stored bytes give."""

    status: PayloadStatus
    actual: str | None = None


def check(expected_digest: str, data: bytes | None, purged: bool) -> PayloadCheck:
    """Classify stored bytes against the digest the events recorded (hashes the bytes)."""
    if data is None:
        return PayloadCheck(PayloadStatus.PURGED if purged else PayloadStatus.MISSING)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_digest:
        return PayloadCheck(PayloadStatus.CORRUPT, actual)
    return PayloadCheck(PayloadStatus.PRESENT)


def classify(expected_digest: str, data: bytes | None, purged: bool) -> PayloadStatus:
    return check(expected_digest, data, purged).status


def without_bytes(has_bytes: bool, purged: bool) -> PayloadStatus:
    """The status of a row read without its bytes (corruption needs the bytes to be seen)."""
    if has_bytes:
        return PayloadStatus.PRESENT
    return PayloadStatus.PURGED if purged else PayloadStatus.MISSING
