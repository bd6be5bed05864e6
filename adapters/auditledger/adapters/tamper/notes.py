"""Checkpoints others can cosign: the C2SP tlog-checkpoint body in a C2SP signed note.

A note is text (UTF-8, every line ending "\\n"), a blank line, then one line per signature:
"— <key name> <base64(4-byte key id || signature)>" (U+2014 and a space). Two signature types:
- 0x01, Ed25519 (golang.org/x/mod/sumdb/note): the signature is Ed25519 over the text;
- 0x04, C2SP tlog-cosignature "cosignature/v1": the signature is u64 big-endian timestamp T
  (POSIX seconds) || Ed25519 over "cosignature/v1\\ntime T\\n" || text.
The key id is the first 4 bytes of SHA-256(key name || "\\n" || type || 32-byte public key);
a verifier key reads "<name>+<key id, 8 hex digits>+<base64(type || public key)>". The
checkpoint body is the origin line, the tree size in decimal and the base64 RFC 9162 root
hash; lines after those (extensions) are kept, unread (a cosignature/v1 signs them too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from auditledger.adapters.tamper.cosignature import cosigned_message, timestamp_of
from auditledger.adapters.tamper.signing import Key
from auditledger.domain.errors import InvalidCheckpoint

DASH = "\u2014 "
ED25519 = b"\x01"
COSIGNATURE_V1 = b"\x04"
KINDS = {ED25519: "ed25519", COSIGNATURE_V1: "cosignature/v1"}
MAX_SIGNATURES = 100


@dataclass(frozen=True)
class TreeCheckpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str, source: str) -> TreeCheckpoint:
        lines = text.split("\n")
        if len(lines) < 4 or not lines[0] or not lines[1].isdigit():
            raise InvalidCheckpoint(source, "not a tlog-checkpoint: origin, size, root hash")
        if lines[1] != str(int(lines[1])):
            raise InvalidCheckpoint(source, f"tree size {lines[1]!r} has leading zeros")
        try:
            root = base64.b64decode(lines[2], validate=True)
        except binascii.Error:
            root = b""
        if len(root) != 32:
            raise InvalidCheckpoint(source, f"root hash {lines[2]!r} is not base64 of 32 bytes")
        return cls(lines[0], int(lines[1]), root)


@dataclass(frozen=True)
class NoteKey:
    """An Ed25519 note key: the public half always, the private half to sign. `kind` is the
    signature type it makes and checks (ED25519 or COSIGNATURE_V1); a key read from a PEM file
    names no type, so it is not `pinned` and checks signatures of both types."""

    name: str
    public: bytes
    private: Any = None
    kind: bytes = ED25519
    pinned: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in " \n+"):
            raise InvalidCheckpoint(
                self.name or "key", "a note key name is not empty and has no space, newline, '+'"
            )
        if len(self.public) != 32:
            raise InvalidCheckpoint(self.name, "an Ed25519 public key is 32 bytes")
        if self.kind not in KINDS:
            raise InvalidCheckpoint(self.name, f"signature type {self.kind.hex()} is not 01, 04")

    @classmethod
    def of(cls, name: str, key: Key, kind: bytes = ED25519) -> NoteKey:
        if key.kind != "ed25519":
            raise InvalidCheckpoint(name, "a signed note needs an Ed25519 key, not HMAC")
        from cryptography.hazmat.primitives import serialization

        raw = key.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(name, raw, key.private, kind)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteKey:
        """`name+keyid+base64(type || public key)`, type 0x01 or 0x04, as `vkey` prints it."""
        name, _, rest = vkey.strip().partition("+")
        hex_id, _, encoded = rest.partition("+")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            blob = b""
        if len(blob) != 33 or blob[:1] not in KINDS:
            raise InvalidCheckpoint(
                vkey, "not an Ed25519 (01) or cosignature/v1 (04) verifier key name+keyid+base64"
            )
        key = cls(name, blob[1:], kind=blob[:1])
        if key.key_id.hex() != hex_id.lower():
            raise InvalidCheckpoint(vkey, f"key id {hex_id} is not {key.key_id.hex()}")
        return key

    def as_kind(self, kind: bytes) -> NoteKey:
        return replace(self, kind=kind)

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(self.name.encode() + b"\n" + self.kind + self.public).digest()[:4]

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(self.kind + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def sign(self, text: str, now: int | None = None) -> NoteSignature:
        """Ed25519 over the text; cosignature/v1: timestamp `now` (default: the clock) too."""
        if self.private is None:
            raise InvalidCheckpoint(self.name, "signing a note needs the Ed25519 private key")
        if self.kind == ED25519:
            return NoteSignature(self.name, self.key_id, self.private.sign(text.encode()))
        stamp = int(time.time()) if now is None else now
        signed = self.private.sign(cosigned_message(stamp, text))
        return NoteSignature(self.name, self.key_id, stamp.to_bytes(8, "big") + signed)

    def signed(self, signature: NoteSignature, text: str, now: float | None = None) -> bool:
        """Whether `signature` is this key's valid signature on `text` (of its type; both types
        when not pinned). A cosignature/v1 of this key that is malformed or dated more than
        MAX_SKEW seconds after `now` (default: the clock) raises CosignatureRefused."""
        kinds = (self.kind,) if self.pinned else tuple(KINDS)
        return any(self.as_kind(kind).signed_as(signature, text, now) for kind in kinds)

    def signed_as(self, signature: NoteSignature, text: str, now: float | None) -> bool:
        if (signature.name, signature.key_id) != (self.name, self.key_id):
            return False
        message, raw = text.encode(), signature.signature
        if self.kind == COSIGNATURE_V1:
            stamp = timestamp_of(signature.name, signature.key_id, signature.signature, now)
            message, raw = cosigned_message(stamp, text), raw[8:]
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ed25519

        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.public).verify(raw, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        encoded = base64.b64encode(self.key_id + self.signature).decode()
        return f"{DASH}{self.name} {encoded}\n"

    @classmethod
    def parse(cls, line: str, source: str) -> NoteSignature:
        name, _, encoded = line.removeprefix(DASH).partition(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            blob = b""
        if not line.startswith(DASH) or not name or len(blob) < 5:
            raise InvalidCheckpoint(source, f"not a note signature line: {line!r}")
        return cls(name, blob[:4], blob[4:])


@dataclass(frozen=True)
class SignedNote:
    text: str
    signatures: tuple[NoteSignature, ...] = ()

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    @classmethod
    def parse(cls, data: str, source: str) -> SignedNote:
        split = data.rfind("\n\n")
        if split < 0 or not data.endswith("\n"):
            raise InvalidCheckpoint(source, "not a signed note: text, blank line, signatures")
        text, block = data[: split + 1], data[split + 2 :]
        lines = block.split("\n")[:-1]
        if not lines or len(lines) > MAX_SIGNATURES:
            raise InvalidCheckpoint(source, f"a note carries 1..{MAX_SIGNATURES} signatures")
        return cls(text, tuple(NoteSignature.parse(line, source) for line in lines))

    def cosigned(self, key: NoteKey, now: int | None = None) -> SignedNote:
        """With `key`'s signature appended (replacing an earlier one by the same key, of
        either type)."""
        ids = {(key.name, key.as_kind(kind).key_id) for kind in KINDS}
        kept = tuple(s for s in self.signatures if (s.name, s.key_id) not in ids)
        return replace(self, signatures=(*kept, key.sign(self.text, now)))

    def signers(self, keys: list[NoteKey], now: float | None = None) -> list[str]:
        """The verifier keys (by vkey) with a valid signature on this note. A trusted key's
        malformed or future cosignature raises CosignatureRefused."""
        return [k.vkey for k in keys if any(k.signed(s, self.text, now) for s in self.signatures)]

    def checkpoint(self, source: str) -> TreeCheckpoint:
        return TreeCheckpoint.parse(self.text, source)


def signed_checkpoint(checkpoint: TreeCheckpoint, key: NoteKey) -> SignedNote:
    return SignedNote(checkpoint.body()).cosigned(key)


def default_origin(store: str) -> str:
    """The origin line for a store URL: no credentials, no spaces ("auditledger/sqlite/...")."""
    parts = urlsplit(store)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    where = f"{host}{parts.path}" if parts.scheme else store
    return "auditledger/" + "/".join(
        p for p in [parts.scheme, *where.replace(" ", "_").split("/")] if p not in ("", ".")
    )


def read_verifier_key(given: str) -> NoteKey:
    """A verifier key string (name+keyid+base64), a file holding one, or an Ed25519 PEM key
    file (its key name is the file's stem; it checks signatures of both types)."""
    path = Path(given)
    if not path.is_file():
        return NoteKey.from_vkey(given)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidCheckpoint(given, f"cannot read the key file: {error}") from None
    if data.lstrip().startswith(b"-----BEGIN"):
        return replace(NoteKey.of(path.stem, Key.from_file(path)), pinned=False)
    return NoteKey.from_vkey(data.decode("utf-8", errors="replace"))
