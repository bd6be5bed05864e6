"""C2SP tlog-cosignature, Ed25519 "cosignature/v1" (note signature type 0x04): the signed
message and the timestamp rules (https://c2sp.org/tlog-cosignature).

A cosignature's signature bytes are u64 big-endian T || Ed25519 signature (64 bytes) over
"cosignature/v1\\n" "time T\\n" followed by the whole note text (the checkpoint body, with
any extension lines, ending "\\n"), T in decimal without leading zeros. T is a POSIX time in
seconds, at most 2^63 - 1; a cosignature dated more than MAX_SKEW seconds after the
verifier's clock is refused, as is one whose bytes do not have that shape.
"""

from __future__ import annotations

import time

from auditledger.domain.errors import LedgerError

MAX_SKEW = 60
"""Seconds a cosignature's timestamp may lie ahead of the verifier's clock."""
MAX_TIMESTAMP = 2**63 - 1
SIGNATURE_BYTES = 8 + 64


class CosignatureRefused(LedgerError):
    """A cosignature/v1 by a trusted key that is malformed or dated in the future."""

    def __init__(self, name: str, key_id: bytes, rule: str) -> None:
        self.name = name
        self.key_id = key_id.hex()
        self.rule = rule
        super().__init__(f"cosignature of {name} (key id {self.key_id}) refused: {rule}")


def cosigned_message(timestamp: int, text: str) -> bytes:
    """What a cosignature/v1 signs: the header line, the time line, then the note's text."""
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def timestamp_of(name: str, key_id: bytes, signature: bytes, now: float | None = None) -> int:
    """The timestamp of a cosignature's bytes; CosignatureRefused when they are not 72 bytes,
    the time exceeds 2^63 - 1, or lies more than MAX_SKEW seconds after `now` (the clock)."""
    if len(signature) != SIGNATURE_BYTES:
        raise CosignatureRefused(
            name, key_id, f"{len(signature)} signature bytes, not 72 (u64 timestamp, Ed25519)"
        )
    stamp = int.from_bytes(signature[:8], "big")
    if stamp > MAX_TIMESTAMP:
        raise CosignatureRefused(name, key_id, f"timestamp {stamp} exceeds 2^63 - 1")
    clock = time.time() if now is None else now
    if stamp > clock + MAX_SKEW:
        raise CosignatureRefused(
            name,
            key_id,
            f"timestamp {stamp} is {stamp - int(clock)} s in the future (allowed: {MAX_SKEW} s)",
        )
    return stamp
