"""A minimal local witness, and the quorum check of a cosigned checkpoint.

The witness keeps, per origin, the last tree (size, root) it cosigned, in a JSON file in its
state directory. It cosigns a newer checkpoint only when the store proves (RFC 9162
consistency proof, checked here against the root the witness kept, not the store's) that
the new tree extends the one it saw; the first checkpoint of an origin is trusted on first
use and recorded. Anything else is refused with WitnessRefused, naming both trees.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from auditledger.adapters.tamper.merkle_errors import NothingToProve, NotSealed
from auditledger.adapters.tamper.merkle_proofs import Prover
from auditledger.adapters.tamper.merkle_verify import verify_consistency
from auditledger.adapters.tamper.notes import DASH, NoteKey, SignedNote, TreeCheckpoint
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.domain.errors import InvalidCheckpoint, LedgerError


class WitnessRefused(LedgerError):
    """The checkpoint does not extend what the witness saw, or does not match the store."""

    def __init__(self, origin: str, reason: str) -> None:
        self.origin = origin
        self.reason = reason
        super().__init__(f"witness refuses checkpoint of {origin}: {reason}")


def tree(size: int, root: bytes) -> str:
    return f"size {size} root {base64.b64encode(root).decode()}"


@dataclass(frozen=True)
class WitnessState:
    directory: Path

    def path(self, origin: str) -> Path:
        return self.directory / (hashlib.sha256(origin.encode()).hexdigest()[:32] + ".json")

    def last(self, origin: str) -> TreeCheckpoint | None:
        path = self.path(origin)
        if not path.exists():
            return None
        try:
            seen = json.loads(path.read_text(encoding="utf-8"))
            return TreeCheckpoint(seen["origin"], int(seen["size"]), bytes.fromhex(seen["root"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InvalidCheckpoint(str(path), f"unreadable witness state: {error}") from None

    def record(self, seen: TreeCheckpoint) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        body = {"origin": seen.origin, "size": seen.size, "root": seen.root.hex()}
        temporary = self.path(seen.origin).with_suffix(".tmp")
        temporary.write_text(json.dumps(body) + "\n", encoding="utf-8")
        temporary.replace(self.path(seen.origin))


def store_root(prover: Prover, checkpoint: TreeCheckpoint, origin: str) -> bytes:
    """The store's root at the checkpoint's size; WitnessRefused when it is another root."""
    try:
        ours = prover.root_hash(checkpoint.size)
    except (NotSealed, NothingToProve) as error:
        raise WitnessRefused(
            origin, f"the note claims {tree(checkpoint.size, checkpoint.root)}; {error}"
        ) from None
    if ours != checkpoint.root:
        raise WitnessRefused(
            origin,
            f"the note claims {tree(checkpoint.size, checkpoint.root)}, the store has "
            f"{tree(checkpoint.size, ours)}",
        )
    return ours


def cosign(
    note: SignedNote, key: NoteKey, state: WitnessState, store: str, source: str
) -> SignedNote:
    """The note with the witness's signature appended, after the checks above; state updated."""
    new = note.checkpoint(source)
    last = state.last(new.origin)
    with RawLog.open(store, read_only=True) as log, Prover.over(log) as prover:
        store_root(prover, new, new.origin)
        if last is not None:
            _extends(prover, last, new)
    cosigned = note.cosigned(key)
    state.record(new)
    return cosigned


def _extends(prover: Prover, last: TreeCheckpoint, new: TreeCheckpoint) -> None:
    was, now = tree(last.size, last.root), tree(new.size, new.root)
    if new.size < last.size:
        raise WitnessRefused(new.origin, f"{now} is older than the {was} already cosigned")
    if new.size == last.size:
        if new.root != last.root:
            raise WitnessRefused(new.origin, f"{now} forks from the {was} already cosigned")
        return
    proof = prover.consistency(last.size, new.size)
    path = [bytes.fromhex(h) for h in proof.proof]
    if not verify_consistency(last.size, new.size, last.root, new.root, path):
        raise WitnessRefused(
            new.origin,
            f"{now} is not consistent with the {was} already cosigned "
            "(the store was rewritten below the old size)",
        )


@dataclass(frozen=True)
class QuorumReport:
    checkpoint: TreeCheckpoint
    signers: list[str]
    quorum: int
    finding: str | None

    @property
    def ok(self) -> bool:
        return self.finding is None


def check_quorum(
    note: SignedNote, keys: list[NoteKey], quorum: int, store: str, source: str
) -> QuorumReport:
    """At least `quorum` of `keys` signed the note, and its root is the store's at its size."""
    checkpoint = note.checkpoint(source)
    signers = note.signers(keys)
    finding = None
    if len(signers) < quorum:
        finding = f"{source}: {len(signers)} valid signature(s) of the keys given, quorum {quorum}"
    else:
        try:
            with RawLog.open(store, read_only=True) as log, Prover.over(log) as prover:
                store_root(prover, checkpoint, checkpoint.origin)
        except WitnessRefused as refused:
            finding = f"{source}: {refused.reason}"
    return QuorumReport(checkpoint, signers, quorum, finding)


def read_note(path: Path) -> SignedNote:
    try:
        return SignedNote.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidCheckpoint(str(path), f"cannot read: {error}") from None


def is_note(path: Path) -> bool:
    """A signed-note checkpoint file (a blank line, then a signature line), rather than
    `checkpoint`'s JSON lines (anything else is read, and reported, as JSON lines)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return not text.lstrip().startswith("{") and f"\n\n{DASH}" in text
