"""The C2SP signed-note and tlog-checkpoint formats, byte for byte."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from auditledger.adapters.tamper.notes import (
    NoteKey,
    SignedNote,
    TreeCheckpoint,
    default_origin,
    signed_checkpoint,
)
from auditledger.domain.errors import InvalidCheckpoint

# The example of golang.org/x/mod/sumdb/note (and the C2SP signed-note spec), used as data.
GO_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def note_key(name: str, seed: bytes) -> NoteKey:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return NoteKey(name, public, private)


def test_signing_the_go_example_gives_its_note_and_verifier_key_byte_for_byte() -> None:
    key = note_key("PeterNeumann", GO_SEED)
    assert key.vkey == GO_VKEY
    assert SignedNote(GO_TEXT).cosigned(key).render() == GO_NOTE


def test_the_spec_example_note_verifies_under_its_verifier_key() -> None:
    note = SignedNote.parse(SPEC_NOTE, "spec")
    assert note.signers([NoteKey.from_vkey(SPEC_VKEY)]) == [SPEC_VKEY]
    assert note.render() == SPEC_NOTE


def test_a_key_id_is_sha256_of_name_newline_type_and_public_key() -> None:
    key = NoteKey.from_vkey(GO_VKEY)
    expected = hashlib.sha256(b"PeterNeumann\n\x01" + key.public).digest()[:4]
    assert key.key_id == expected == bytes.fromhex("c74f20a3")


def test_a_checkpoint_note_is_origin_size_base64_root_a_blank_line_then_signatures() -> None:
    root = bytes(range(32))
    note = signed_checkpoint(TreeCheckpoint("example.com/log", 70, root), note_key("log", GO_SEED))
    signature = note.signatures[0]
    assert note.render().encode() == (
        b"example.com/log\n70\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n"
        b"\xe2\x80\x94 log " + base64.b64encode(signature.key_id + signature.signature) + b"\n"
    )
    assert len(signature.signature) == 64
    assert (
        signature.key_id
        == hashlib.sha256(b"log\n\x01" + note_key("log", GO_SEED).public).digest()[:4]
    )
    parsed = SignedNote.parse(note.render(), "golden")
    assert parsed.checkpoint("golden") == TreeCheckpoint("example.com/log", 70, root)


def test_a_tampered_signature_or_text_is_not_valid() -> None:
    key = NoteKey.from_vkey(GO_VKEY)
    flipped = GO_NOTE.replace("x08go/", "x08go+")
    assert SignedNote.parse(flipped, "flipped").signers([key]) == []
    forged = SignedNote.parse(GO_NOTE.replace("cryptography", "cryptographY"), "forged")
    assert forged.signers([key]) == []
    assert SignedNote.parse(GO_NOTE, "good").signers([key]) == [GO_VKEY]


def test_cosigning_appends_one_signature_and_keeps_the_others() -> None:
    witness = note_key("witness.example/w1", bytes(32))
    cosigned = SignedNote.parse(GO_NOTE, "go").cosigned(witness)
    assert cosigned.render().startswith(GO_NOTE)
    assert cosigned.signers([NoteKey.from_vkey(GO_VKEY), witness]) == [GO_VKEY, witness.vkey]
    assert cosigned.cosigned(witness).render() == cosigned.render()


@pytest.mark.parametrize(
    "bad",
    [
        "no blank line\n",
        "text\n\n",
        "text\n\nnot a signature\n",
        "text\n\n\u2014 name AAAA\n",
        "text\n\n\u2014 name " + base64.b64encode(bytes(68)).decode(),
    ],
)
def test_a_malformed_note_is_refused(bad: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        SignedNote.parse(bad, "bad")


@pytest.mark.parametrize(
    "body", ["origin\n070\nAAAA\n", "origin\nx\nAAAA\n", "origin\n1\nAAAA\n", "\n1\n"]
)
def test_a_malformed_checkpoint_body_is_refused(body: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        TreeCheckpoint.parse(body, "bad")


def test_a_verifier_key_with_the_wrong_key_id_is_refused() -> None:
    with pytest.raises(InvalidCheckpoint, match="key id"):
        NoteKey.from_vkey(GO_VKEY.replace("c74f20a3", "c74f20a4"))


def test_the_default_origin_drops_credentials_and_spaces() -> None:
    assert default_origin("postgresql://u:secret@db.example:5432/audit") == (
        "auditledger/postgresql/db.example:5432/audit"
    )
    assert default_origin("sqlite:////srv/my audit") == "auditledger/sqlite/srv/my_audit"


@pytest.mark.parametrize(("name", "public"), [("two words", bytes(32)), ("a+b", bytes(32)),
                                              ("", bytes(32)), ("short", bytes(31))])  # fmt: skip
def test_a_note_key_with_a_bad_name_or_public_key_is_refused(name: str, public: bytes) -> None:
    with pytest.raises(InvalidCheckpoint):
        NoteKey(name, public)
