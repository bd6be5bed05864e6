"""Checkpoint keys: sign a log head, check a signature.

A key comes from the user's config: a key file or an environment variable.
- HMAC-SHA256 (stdlib): the secret is the file's bytes (trailing newline dropped) or the
  variable's text. Whoever can check such a signature can also make one.
- Ed25519 (needs the optional `cryptography` package, `pip install auditledger[signing]`):
  a PEM private key signs; its PEM public key (or the private key) checks. An auditor holding
  only the public key can check checkpoints and cannot forge them.
Signatures read "hmac-sha256:<hex>" or "ed25519:<hex>" and cover Checkpoint.message().
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditledger.adapters.tamper.chain_format import Checkpoint
from auditledger.adapters.tamper.raw_log import Head
from auditledger.domain.errors import InvalidCheckpoint


@dataclass(frozen=True)
class Key:
    kind: str  # "hmac-sha256" | "ed25519"
    secret: bytes = b""
    private: Any = None
    public: Any = None

    @classmethod
    def from_file(cls, path: Path) -> Key:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InvalidCheckpoint(str(path), f"cannot read the key file: {error}") from None
        if data.lstrip().startswith(b"-----BEGIN"):
            return _ed25519(data, str(path))
        secret = data.rstrip(b"\r\n")
        if not secret:
            raise InvalidCheckpoint(str(path), "the key file is empty")
        return cls("hmac-sha256", secret=secret)

    @classmethod
    def from_env(cls, variable: str) -> Key:
        value = os.environ.get(variable, "")
        if not value:
            raise InvalidCheckpoint(f"${variable}", "the environment variable is unset or empty")
        return cls("hmac-sha256", secret=value.encode("utf-8"))

    def sign(self, checkpoint: Checkpoint) -> Checkpoint:
        if self.kind == "hmac-sha256":
            value = hmac.new(self.secret, checkpoint.message(), hashlib.sha256).hexdigest()
        elif self.private is not None:
            value = self.private.sign(checkpoint.message()).hex()
        else:
            raise InvalidCheckpoint(
                "key", "an Ed25519 public key checks signatures; signing needs the private key"
            )
        return replace(checkpoint, signature=f"{self.kind}:{value}")

    def check(self, checkpoint: Checkpoint) -> bool:
        kind, _, value = (checkpoint.signature or "").partition(":")
        if kind != self.kind or not value:
            return False
        if self.kind == "hmac-sha256":
            expected = hmac.new(self.secret, checkpoint.message(), hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, value)
        from cryptography.exceptions import InvalidSignature

        try:
            self.public.verify(bytes.fromhex(value), checkpoint.message())
        except (InvalidSignature, ValueError):
            return False
        return True


def _ed25519(pem: bytes, source: str) -> Key:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise InvalidCheckpoint(
            source,
            "an Ed25519 key needs the cryptography package: pip install "
            "'auditledger[signing]' (or use an HMAC secret)",
        ) from None
    try:
        if b"PRIVATE KEY" in pem:
            private = serialization.load_pem_private_key(pem, password=None)
            if not isinstance(private, ed25519.Ed25519PrivateKey):
                raise ValueError("not an Ed25519 key")
            return Key("ed25519", private=private, public=private.public_key())
        public = serialization.load_pem_public_key(pem)
        if not isinstance(public, ed25519.Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        return Key("ed25519", public=public)
    except (ValueError, TypeError) as error:
        raise InvalidCheckpoint(source, f"not a usable Ed25519 PEM key: {error}") from None


def checkpoint_of(head: Head, key: Key | None = None, now: datetime | None = None) -> Checkpoint:
    moment = (now or datetime.now(UTC)).isoformat(timespec="microseconds")
    checkpoint = Checkpoint(head.position, head.chain_hash, moment)
    return key.sign(checkpoint) if key is not None else checkpoint


def read_key(key_file: Path | None, hmac_key_env: str | None) -> Key | None:
    if key_file is not None and hmac_key_env is not None:
        raise InvalidCheckpoint("key", "give --key-file or --hmac-key-env, not both")
    if key_file is not None:
        return Key.from_file(key_file)
    if hmac_key_env is not None:
        return Key.from_env(hmac_key_env)
    return None
