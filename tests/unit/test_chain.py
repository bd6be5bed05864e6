"""The chain arithmetic and checkpoints, without any database."""

from __future__ import annotations

import hashlib
import struct
import uuid
from pathlib import Path

import pytest

from auditledger.adapters.tamper.chain_format import (
    GENESIS,
    Checkpoint,
    link,
    originator_text,
    parse_checkpoints,
    payload_digests,
)
from auditledger.adapters.tamper.raw_log import Head
from auditledger.adapters.tamper.signing import Key, checkpoint_of
from auditledger.domain.errors import InvalidCheckpoint


def test_a_link_is_sha256_over_the_documented_length_prefixed_fields() -> None:
    prev = bytes(range(32))
    expected = hashlib.sha256(
        b"auditledger-chain-v1\x00"
        + prev
        + struct.pack(">Q", 7)
        + struct.pack(">Q", 5)
        + b"topic"
        + struct.pack(">Q", 3)
        + b"abc"
        + struct.pack(">Q", 2)
        + struct.pack(">Q", 4)
        + b'{""}'
    ).digest()
    assert link(prev, 7, "topic", "abc", 2, b'{""}') == expected


def test_moving_bytes_between_fields_changes_the_link() -> None:
    assert link(GENESIS, 1, "ab", "c", 1, b"") != link(GENESIS, 1, "a", "bc", 1, b"")
    assert link(GENESIS, 1, "t", "o", 1, b"x") != link(GENESIS, 2, "t", "o", 1, b"x")


def test_an_originator_uuid_is_written_as_eventsourcings_sqlite_hex() -> None:
    some = uuid.uuid4()
    assert originator_text(some) == some.hex == originator_text(some.hex)


def test_payload_digests_are_the_hash_and_ref_fields_of_the_state() -> None:
    digest = "ab" * 32
    state = (
        f'{{"request_hash":"{digest}","request_ref":"{digest}","config_json":'
        f'"{{\\"x_hash\\":\\"{"cd" * 32}\\"}}","output_hash":null}}'
    ).encode()
    assert payload_digests(state) == {digest}


def test_a_checkpoint_survives_its_json_line() -> None:
    checkpoint = Checkpoint(12, "ef" * 32, "2026-01-01T00:00:00+00:00", "hmac-sha256:00")
    assert Checkpoint.from_json(checkpoint.to_json()) == checkpoint


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        '{"format":"other","position":1,"chain_hash":"' + "a" * 64 + '","timestamp":"t"}',
        '{"format":"auditledger-checkpoint/v1","position":-1,"chain_hash":"'
        + "a" * 64
        + '","timestamp":"t"}',
        '{"format":"auditledger-checkpoint/v1","position":1,"chain_hash":"xyz","timestamp":"t"}',
    ],
)
def test_a_malformed_checkpoint_is_refused_naming_the_line(line: str) -> None:
    with pytest.raises(InvalidCheckpoint, match=r"cp\.jsonl:1"):
        parse_checkpoints(line, "cp.jsonl")


def test_an_hmac_signature_checks_only_with_the_same_secret_and_the_same_head() -> None:
    key = Key("hmac-sha256", secret=b"s3cret")
    signed = checkpoint_of(Head(5, "aa" * 32), key)
    assert key.check(signed)
    assert not Key("hmac-sha256", secret=b"other").check(signed)
    moved = Checkpoint(6, signed.chain_hash, signed.timestamp, signed.signature)
    assert not key.check(moved)
    assert not key.check(checkpoint_of(Head(5, "aa" * 32)))


def test_an_ed25519_public_key_checks_what_the_private_key_signed(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    private_file = tmp_path / "signing.pem"
    public_file = tmp_path / "signing.pub.pem"
    private_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_file.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    signed = checkpoint_of(Head(9, "bb" * 32), Key.from_file(private_file))
    public = Key.from_file(public_file)
    assert signed.signature is not None and signed.signature.startswith("ed25519:")
    assert public.check(signed)
    assert not public.check(Checkpoint(9, "cc" * 32, signed.timestamp, signed.signature))
    with pytest.raises(InvalidCheckpoint, match="private key"):
        public.sign(signed)
