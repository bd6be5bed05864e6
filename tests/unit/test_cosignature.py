"""C2SP tlog-cosignature (cosignature/v1, note signature type 0x04): a published checkpoint
cosigned by a real witness, the spec's example, and the timestamp rules."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from auditledger.adapters.tamper.cosignature import MAX_SKEW, CosignatureRefused, timestamp_of
from auditledger.adapters.tamper.notes import (
    COSIGNATURE_V1,
    ED25519,
    NoteKey,
    NoteSignature,
    SignedNote,
)
from auditledger.domain.errors import InvalidCheckpoint
from tests.unit.test_notes import GO_SEED, note_key

VECTORS = json.loads(
    (Path(__file__).parents[1] / "data" / "c2sp_cosignature_vectors.json").read_text("utf-8")
)
PUBLISHED = VECTORS["published_checkpoint"]
BODY = "origin.example/log\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
T = 1_800_000_000


def test_a_published_checkpoint_verifies_under_its_log_key_and_its_witness_cosignature() -> None:
    note = SignedNote.parse(PUBLISHED["note"], "published")
    log = NoteKey.from_vkey(PUBLISHED["log_vkey"])
    witness = NoteKey.from_vkey(PUBLISHED["witness_vkey"])
    assert (log.kind, witness.kind) == (ED25519, COSIGNATURE_V1)
    now = PUBLISHED["witness_timestamp"] + 1
    assert note.signers([log, witness], now) == [PUBLISHED["log_vkey"], PUBLISHED["witness_vkey"]]
    assert note.checkpoint("published").size == 1432088532


def test_the_published_cosignature_does_not_hold_for_another_tree_or_as_type_01() -> None:
    witness = NoteKey.from_vkey(PUBLISHED["witness_vkey"])
    now = PUBLISHED["witness_timestamp"] + 1
    other = SignedNote.parse(PUBLISHED["note"].replace("1432088532", "1432088533"), "edited")
    assert other.signers([witness], now) == []
    as_plain = witness.as_kind(ED25519)
    assert SignedNote.parse(PUBLISHED["note"], "p").signers([as_plain], now) == []


def test_a_cosignature_key_id_is_sha256_of_name_newline_0x04_and_public_key() -> None:
    witness = NoteKey.from_vkey(PUBLISHED["witness_vkey"])
    expected = hashlib.sha256(b"remora.n621.de\n\x04" + witness.public).digest()[:4]
    assert witness.key_id == expected == bytes.fromhex("da77ade7")
    assert witness.vkey == PUBLISHED["witness_vkey"]


def test_the_timestamps_of_the_spec_example_and_the_go_vector_read_back() -> None:
    spec = SignedNote.parse(VECTORS["spec_example"]["note"], "spec")
    line = next(s for s in spec.signatures if s.name == VECTORS["spec_example"]["witness"])
    assert timestamp_of(line.name, line.key_id, line.signature, now=2e9) == 1679315147
    blob = base64.b64decode(VECTORS["timestamp_only"]["signature_base64"])
    stamp = timestamp_of("go", blob[:4], blob[4:], now=2e9)
    assert stamp == VECTORS["timestamp_only"]["timestamp"]


def test_signing_a_cosignature_is_ed25519_over_header_time_and_the_whole_body() -> None:
    key = note_key("witness.example/w1", GO_SEED).as_kind(COSIGNATURE_V1)
    signature = SignedNote(BODY + "extension line\n").cosigned(key, now=T).signatures[-1]
    assert signature.key_id == hashlib.sha256(b"witness.example/w1\n\x04" + key.public).digest()[:4]
    assert signature.signature[:8] == T.to_bytes(8, "big")
    message = f"cosignature/v1\ntime {T}\n{BODY}extension line\n".encode()
    ed25519.Ed25519PublicKey.from_public_bytes(key.public).verify(signature.signature[8:], message)
    assert key.vkey.split("+", 2)[2] == base64.b64encode(b"\x04" + key.public).decode()


def test_a_cosignature_dated_beyond_the_skew_or_malformed_is_refused_by_name() -> None:
    key = note_key("w1", GO_SEED).as_kind(COSIGNATURE_V1)
    note = SignedNote(BODY).cosigned(key, now=T + MAX_SKEW + 1)
    with pytest.raises(CosignatureRefused, match=r"w1 .*in the future") as refused:
        note.signers([key], now=T)
    assert refused.value.key_id == key.key_id.hex()
    assert SignedNote(BODY).cosigned(key, now=T + MAX_SKEW).signers([key], now=T) == [key.vkey]
    short = NoteSignature("w1", key.key_id, bytes(64))
    with pytest.raises(CosignatureRefused, match="not 72"):
        SignedNote(BODY, (short,)).signers([key], now=T)
    huge = NoteSignature("w1", key.key_id, (2**63).to_bytes(8, "big") + bytes(64))
    with pytest.raises(CosignatureRefused, match="exceeds 2\\^63 - 1"):
        SignedNote(BODY, (huge,)).signers([key], now=T)


def test_a_cosignature_of_an_untrusted_key_is_ignored_whatever_its_date() -> None:
    stranger = note_key("stranger", bytes(32)).as_kind(COSIGNATURE_V1)
    trusted = note_key("w1", GO_SEED).as_kind(COSIGNATURE_V1)
    note = SignedNote(BODY).cosigned(stranger, now=T + 10**6)
    assert note.signers([trusted], now=T) == []


def test_a_pinned_vkey_checks_its_own_type_and_a_pem_key_checks_both() -> None:
    plain = note_key("w1", GO_SEED)
    cosigning = plain.as_kind(COSIGNATURE_V1)
    both = SignedNote(BODY).cosigned(cosigning, now=T)
    assert both.signers([plain], now=T) == []
    unpinned = replace(plain, pinned=False)
    assert both.signers([unpinned], now=T) == [plain.vkey]
    assert SignedNote(BODY).cosigned(plain).signers([unpinned], now=T) == [plain.vkey]


def test_cosigning_again_with_the_other_type_replaces_the_earlier_signature() -> None:
    plain = note_key("w1", GO_SEED)
    once = SignedNote(BODY).cosigned(plain)
    again = once.cosigned(plain.as_kind(COSIGNATURE_V1), now=T)
    assert len(again.signatures) == 1
    assert again.signatures[0].key_id == plain.as_kind(COSIGNATURE_V1).key_id


def test_a_verifier_key_of_another_type_is_refused() -> None:
    witness = NoteKey.from_vkey(PUBLISHED["witness_vkey"])
    blob = base64.b64encode(b"\x05" + witness.public).decode()
    with pytest.raises(InvalidCheckpoint, match=r"01.*04"):
        NoteKey.from_vkey(f"remora.n621.de+da77ade7+{blob}")
