"""A minimal local witness, and the quorum check of a cosigned checkpoint.

The witness keeps, per origin, the last tree (size, root) it cosigned, in a JSON file in its
state directory. Given the log's verifier key(s), it first refuses (NotSignedByLog) a
checkpoint that carries no valid signature by one of them, as C2SP witnesses do. It cosigns a
newer checkpoint only when the store proves (RFC 9162 consistency proof, checked here against
the root the witness kept, not the store's) that the new tree extends the one it saw; the
first checkpoint of an origin is trusted on first use and recorded. Anything else is refused
with WitnessRefused, naming both trees.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from auditledger.adapters.tamper.cosignature import CosignatureRefused
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


class NotSignedByLog(WitnessRefused):
    """The checkpoint lacks a valid signature by any of the log keys the witness was given."""

    def __init__(self, origin: str, log_keys: list[NoteKey], detail: str = "") -> None:
        self.log_keys = [k.vkey for k in log_keys]
        super().__init__(
            origin,
            "the note has no valid signature by the log key "
            + " or ".join(self.log_keys)
            + (f" ({detail})" if detail else "")
            + "; a witness cosigns only what the log signed",
        )


def check_log_signature(note: SignedNote, log_keys: list[NoteKey], origin: str) -> None:
    try:
        if note.signers(log_keys):
            return
    except CosignatureRefused as refused:
        raise NotSignedByLog(origin, log_keys, refused.rule) from None
    raise NotSignedByLog(origin, log_keys)


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
    note: SignedNote,
    key: NoteKey,
    state: WitnessState,
    store: str,
    source: str,
    log_keys: list[NoteKey] | None = None,
) -> SignedNote:
    """The note with the witness's signature appended, after the checks above; state updated.
    Without `log_keys` the log's own signature is not checked (the caller warns)."""
    new = note.checkpoint(source)
    if log_keys:
        check_log_signature(note, log_keys, new.origin)
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
    try:
        signers = note.signers(keys)
    except CosignatureRefused as refused:
        return QuorumReport(checkpoint, [], quorum, f"{source}: {refused}")
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
