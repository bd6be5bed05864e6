"""Ed25519 key files for the CLI's --key-file / --witness-key options."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def write_key(directory: Path, name: str) -> tuple[Path, Path]:
    """A fresh Ed25519 key written as `name`.pem (PKCS#8) and `name`.pub (SPKI) in
    `directory`; returns (private, public) paths."""
    private = ed25519.Ed25519PrivateKey.generate()
    pem, pub = directory / f"{name}.pem", directory / f"{name}.pub"
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pem, pub
