"""The payload store answers for many digests at once as it answers for each one."""

from __future__ import annotations

import hashlib

import pytest

from auditledger.adapters import Ledger
from auditledger.domain.errors import PayloadMissing

NEVER = hashlib.sha256(b"never stored").hexdigest()


def test_statuses_and_read_many_agree_with_the_single_answers(ledger: Ledger) -> None:
    kept = ledger.store_bytes(b"kept")
    purged = ledger.store_bytes(b"purged")
    assert ledger.payloads.purge([purged]) == 1
    digests = [kept, purged, NEVER]

    assert ledger.payloads.statuses(digests) == {
        kept: "present",
        purged: "purged",
        NEVER: "missing",
    }
    assert {d: ledger.payloads.status(d) for d in digests} == ledger.payloads.statuses(digests)
    assert ledger.payloads.read_many(digests) == {
        kept: (b"kept", False),
        purged: (None, True),
        NEVER: (None, False),
    }


def test_get_many_is_get_in_bulk(ledger: Ledger) -> None:
    kept = ledger.store_bytes(b"kept")
    other = ledger.store_bytes(b"other")
    assert ledger.payloads.get_many([kept, other, kept]) == {kept: b"kept", other: b"other"}
    assert ledger.payloads.purge([other]) == 1
    with pytest.raises(PayloadMissing):
        ledger.payloads.get_many([kept, other])


def test_many_digests_are_answered_across_chunks(ledger: Ledger) -> None:
    stored = [ledger.store_bytes(f"payload {i}".encode()) for i in range(1_203)]
    assert set(ledger.payloads.statuses([*stored, NEVER]).values()) == {"present", "missing"}
    found = ledger.payloads.read_many(stored)
    assert len(found) == 1_203
    assert all(hashlib.sha256(data or b"").hexdigest() == d for d, (data, _) in found.items())
