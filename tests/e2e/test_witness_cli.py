"""Cosigned checkpoints through the installed entry point: `checkpoint --note`, `witness`,
`verify-chain`/`verify --checkpoint NOTE --witness-key ... --quorum K`."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from auditledger.adapters.tamper.notes import SignedNote
from tests.support.cli_runner import run_cli as run
from tests.support.keys import write_key

ORIGIN = "example.com/audit"


def demo_store(directory: Path, runs: int = 1) -> str:
    url = f"sqlite:///{directory}"
    for _ in range(runs):
        assert run("demo", "--store", url).returncode == 0
    return url


def note_of(store: str, path: Path, key: Path) -> Path:
    made = run(
        "checkpoint", "--store", store, "--note", str(path), "--origin", ORIGIN,
        "--key-file", str(key), "--key-name", "log",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return path


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {name: write_key(tmp_path, name) for name in ("log", "w1", "w2")}


def test_a_note_cosigned_by_two_witnesses_meets_quorum_two_and_not_three(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    store = demo_store(tmp_path / "audit")
    note = note_of(store, tmp_path / "head.note", keys["log"][0])
    for witness in ("w1", "w2"):
        cosigned = run(
            "witness", "--store", store, "--state", str(tmp_path / f"state-{witness}"),
            "--key", str(keys[witness][0]), str(note),
        )  # fmt: skip
        assert cosigned.returncode == 0, cosigned.stderr
    text = note.read_text(encoding="utf-8")
    assert [s.name for s in SignedNote.parse(text, "note").signatures] == ["log", "w1", "w2"]
    vkey_w2 = (tmp_path / "state-w2" / "vkey").read_text(encoding="utf-8").strip()
    witnesses = ["--witness-key", str(keys["w1"][1]), "--witness-key", vkey_w2]
    two = run("verify-chain", "--store", store, "--checkpoint", str(note), *witnesses)
    assert two.returncode == 0, two.stdout + two.stderr
    assert "2 of quorum 1" in two.stdout
    quorum_two = run("verify", "--store", store, "--checkpoint", str(note), *witnesses,
                     "--quorum", "2")  # fmt: skip
    assert quorum_two.returncode == 0, quorum_two.stdout + quorum_two.stderr
    three = run("verify-chain", "--store", store, "--checkpoint", str(note), *witnesses,
                "--quorum", "3")  # fmt: skip
    assert three.returncode == 1
    assert "2 valid signature(s) of the keys given, quorum 3" in three.stdout
    with_log = run("verify-chain", "--store", store, "--checkpoint", str(note), *witnesses,
                   "--witness-key", str(keys["log"][1]), "--quorum", "3")  # fmt: skip
    assert with_log.returncode == 0, with_log.stdout


def test_a_tampered_witness_signature_does_not_count(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    store = demo_store(tmp_path / "audit")
    note = note_of(store, tmp_path / "head.note", keys["log"][0])
    state = str(tmp_path / "state")
    assert run("witness", "--store", store, "--state", state, "--key", str(keys["w1"][0]),
               str(note)).returncode == 0  # fmt: skip
    lines = note.read_text(encoding="utf-8").split("\n")
    signature = lines[-2]
    flipped = signature[:-6] + ("A" if signature[-6] != "A" else "B") + signature[-5:]
    note.write_text("\n".join([*lines[:-2], flipped, ""]), encoding="utf-8")
    checked = run("verify-chain", "--store", store, "--checkpoint", str(note),
                  "--witness-key", str(keys["w1"][1]))  # fmt: skip
    assert checked.returncode == 1
    assert "0 valid signature(s)" in checked.stdout


def test_a_note_whose_root_was_forged_is_refused_by_the_witness_and_by_verify(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    store = demo_store(tmp_path / "audit")
    note = note_of(store, tmp_path / "head.note", keys["log"][0])
    origin, size, root, *rest = note.read_text(encoding="utf-8").split("\n")
    forged_root = ("B" if root[0] != "B" else "C") + root[1:]
    note.write_text("\n".join([origin, size, forged_root, *rest]), encoding="utf-8")
    refused = run("witness", "--store", store, "--state", str(tmp_path / "state"),
                  "--key", str(keys["w1"][0]), str(note))  # fmt: skip
    assert refused.returncode == 1
    assert f"size {size} root {forged_root}" in refused.stderr
    assert f"size {size} root {root}" in refused.stderr
    assert not (tmp_path / "state" / "vkey").exists()
    # the log's own signature no longer holds either, nor the root
    checked = run("verify-chain", "--store", store, "--checkpoint", str(note),
                  "--witness-key", str(keys["w1"][1]))  # fmt: skip
    assert checked.returncode == 1


def test_a_witness_refuses_a_store_rewritten_after_it_saw_a_larger_tree(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    state = str(tmp_path / "state")
    original = demo_store(tmp_path / "original")
    first = note_of(original, tmp_path / "first.note", keys["log"][0])
    assert run("witness", "--store", original, "--state", state, "--key", str(keys["w1"][0]),
               str(first)).returncode == 0  # fmt: skip
    seen = json.loads(next((tmp_path / "state").glob("*.json")).read_text(encoding="utf-8"))

    rewritten = demo_store(tmp_path / "rewritten", runs=2)  # another history, same origin
    second = note_of(rewritten, tmp_path / "second.note", keys["log"][0])
    refused = run("witness", "--store", rewritten, "--state", state,
                  "--key", str(keys["w1"][0]), str(second))  # fmt: skip
    assert refused.returncode == 1, refused.stdout
    new_size = second.read_text(encoding="utf-8").split("\n")[1]
    assert f"size {seen['size']} root" in refused.stderr
    assert f"size {new_size} root" in refused.stderr
    assert "not consistent" in refused.stderr
    assert len(SignedNote.parse(second.read_text(encoding="utf-8"), "n").signatures) == 1

    older = run("witness", "--store", original, "--state", state,
                "--key", str(keys["w1"][0]), str(first))  # fmt: skip
    assert older.returncode == 0  # the same tree again is consistent with itself


def test_a_witness_cosigns_a_grown_log_and_refuses_to_go_back(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    state = str(tmp_path / "state")
    store = demo_store(tmp_path / "audit")
    first = note_of(store, tmp_path / "first.note", keys["log"][0])
    assert run("witness", "--store", store, "--state", state, "--key", str(keys["w1"][0]),
               str(first)).returncode == 0  # fmt: skip
    assert run("demo", "--store", store).returncode == 0
    grown = note_of(store, tmp_path / "grown.note", keys["log"][0])
    cosigned = run("witness", "--store", store, "--state", state, "--key", str(keys["w1"][0]),
                   str(grown))  # fmt: skip
    assert cosigned.returncode == 0, cosigned.stderr
    back = run("witness", "--store", store, "--state", state, "--key", str(keys["w1"][0]),
               str(first))  # fmt: skip
    assert back.returncode == 1
    assert "older than" in back.stderr


def test_checkpoint_without_a_format_still_prints_one_json_line(tmp_path: Path) -> None:
    store = demo_store(tmp_path / "audit")
    printed = run("checkpoint", "--store", store)
    assert printed.returncode == 0
    assert json.loads(printed.stdout)["format"] == "auditledger-checkpoint/v1"


def test_checkpoint_note_root_is_the_tree_root_a_consistency_proof_names(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    store = demo_store(tmp_path / "audit")
    note = note_of(store, tmp_path / "head.note", keys["log"][0])
    origin, size, root, blank, signature, end = note.read_text(encoding="utf-8").split("\n")
    assert (origin, blank, end) == (ORIGIN, "", "")
    assert signature.startswith("\u2014 log ")
    proof = json.loads(run("consistency", "--old", "1", "--new", size, "--store", store).stdout)
    assert bytes.fromhex(proof["new_root"]).hex() == __import__("base64").b64decode(root).hex()


@pytest.mark.postgres
def test_on_postgresql_a_witness_follows_a_growing_log_and_verify_checks_its_note(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]], postgres_url: str
) -> None:
    state = str(tmp_path / "state")
    assert run("demo", "--store", postgres_url).returncode == 0
    first = note_of(postgres_url, tmp_path / "first.note", keys["log"][0])
    assert run("witness", "--store", postgres_url, "--state", state,
               "--key", str(keys["w1"][0]), str(first)).returncode == 0  # fmt: skip
    assert run("demo", "--store", postgres_url).returncode == 0
    grown = note_of(postgres_url, tmp_path / "grown.note", keys["log"][0])
    cosigned = run("witness", "--store", postgres_url, "--state", state,
                   "--key", str(keys["w1"][0]), str(grown))  # fmt: skip
    assert cosigned.returncode == 0, cosigned.stderr
    checked = run("verify-chain", "--store", postgres_url, "--checkpoint", str(grown),
                  "--witness-key", str(keys["w1"][1]), "--witness-key", str(keys["log"][1]),
                  "--quorum", "2")  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_json_checkpoint_file_with_a_leading_blank_line_is_still_json(tmp_path: Path) -> None:
    store = demo_store(tmp_path / "audit")
    line = run("checkpoint", "--store", store).stdout
    heads = tmp_path / "heads.txt"
    heads.write_text("\n" + line, encoding="utf-8")
    checked = run("verify-chain", "--store", store, "--checkpoint", str(heads))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "checkpoints: 1 of 1 matched" in checked.stdout


def vkey_of(pem: Path, name: str) -> str:
    from auditledger.adapters.tamper.notes import NoteKey
    from auditledger.adapters.tamper.signing import Key

    return NoteKey.of(name, Key.from_file(pem)).vkey


def witness_with_log_key(
    store: str, state: Path, key: Path, note: Path, *log_keys: str
) -> subprocess.CompletedProcess[str]:
    flags = [arg for log_key in log_keys for arg in ("--log-key", log_key)]
    return run("witness", "--store", store, "--state", str(state), "--key", str(key), *flags,
               str(note))  # fmt: skip


def test_a_witness_given_the_log_key_cosigns_what_the_log_signed_as_cosignature_v1(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    store = demo_store(tmp_path / "audit")
    note = note_of(store, tmp_path / "head.note", keys["log"][0])
    log_vkey = vkey_of(keys["log"][0], "log")
    done = witness_with_log_key(store, tmp_path / "state", keys["w1"][0], note, log_vkey)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    signature = SignedNote.parse(note.read_text(encoding="utf-8"), "n").signatures[-1]
    vkey = (tmp_path / "state" / "vkey").read_text(encoding="utf-8").strip()
    public = base64.b64decode(vkey.split("+", 2)[2])
    assert public[:1] == b"\x04"  # a cosignature/v1 verifier key
    assert signature.key_id == hashlib.sha256(b"w1\n" + public).digest()[:4]
    assert abs(int.from_bytes(signature.signature[:8], "big") - time.time()) < 120
    checked = run("verify-chain", "--store", store, "--checkpoint", str(note),
                  "--witness-key", vkey, "--witness-key", log_vkey, "--quorum", "2")  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    from_file = tmp_path / "log.vkey"
    from_file.write_text(log_vkey + "\n", encoding="utf-8")
    again = witness_with_log_key(store, tmp_path / "state", keys["w2"][0], note, str(from_file))
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("damage", ["unsigned by the log", "log signature flipped"])
def test_a_witness_given_the_log_key_refuses_a_note_the_log_did_not_sign(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]], damage: str
) -> None:
    store = demo_store(tmp_path / "audit")
    if damage == "unsigned by the log":  # signed by another key under the log's name
        note = note_of(store, tmp_path / "head.note", keys["w2"][0])
    else:
        note = note_of(store, tmp_path / "head.note", keys["log"][0])
        lines = note.read_text(encoding="utf-8").split("\n")
        lines[-2] = lines[-2][:-6] + ("A" if lines[-2][-6] != "A" else "B") + lines[-2][-5:]
        note.write_text("\n".join(lines), encoding="utf-8")
    before = note.read_bytes()
    state = tmp_path / "state"
    refused = witness_with_log_key(store, state, keys["w1"][0], note, str(keys["log"][1]))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "no valid signature by the log key log+" in refused.stderr
    assert note.read_bytes() == before
    assert not state.exists() or not any(state.iterdir())  # nothing recorded, no vkey


def test_a_witness_without_the_log_key_warns_that_it_does_not_check_the_log(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    store = demo_store(tmp_path / "audit")
    note = note_of(store, tmp_path / "head.note", keys["w2"][0])  # not the log's key
    done = run("witness", "--store", store, "--state", str(tmp_path / "state"),
               "--key", str(keys["w1"][0]), str(note))  # fmt: skip
    assert done.returncode == 0
    assert "no --log-key" in done.stderr and "NOT checked" in done.stderr


def test_a_witness_can_still_make_plain_ed25519_signatures_and_verify_reads_both(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    store = demo_store(tmp_path / "audit")
    note = note_of(store, tmp_path / "head.note", keys["log"][0])
    plain = run("witness", "--store", store, "--state", str(tmp_path / "s1"), "--key",
                str(keys["w1"][0]), "--signature-type", "ed25519", str(note))  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    vkey_w1 = (tmp_path / "s1" / "vkey").read_text(encoding="utf-8").strip()
    assert base64.b64decode(vkey_w1.split("+", 2)[2])[:1] == b"\x01"
    assert run("witness", "--store", store, "--state", str(tmp_path / "s2"), "--key",
               str(keys["w2"][0]), str(note)).returncode == 0  # fmt: skip
    vkey_w2 = (tmp_path / "s2" / "vkey").read_text(encoding="utf-8").strip()
    checked = run("verify", "--store", store, "--checkpoint", str(note), "--witness-key",
                  vkey_w1, "--witness-key", vkey_w2, "--quorum", "2")  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    bad = run("witness", "--store", store, "--state", str(tmp_path / "s3"), "--key",
              str(keys["w1"][0]), "--signature-type", "rsa", str(note))  # fmt: skip
    assert bad.returncode == 2 and "cosignature/v1, ed25519" in bad.stderr


def test_verify_refuses_a_note_whose_trusted_cosignature_is_dated_in_the_future(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    from auditledger.adapters.tamper.notes import COSIGNATURE_V1, NoteKey
    from auditledger.adapters.tamper.signing import Key

    store = demo_store(tmp_path / "audit")
    note = note_of(store, tmp_path / "head.note", keys["log"][0])
    witness = NoteKey.of("w1", Key.from_file(keys["w1"][0]), COSIGNATURE_V1)
    future = SignedNote.parse(note.read_text(encoding="utf-8"), "n").cosigned(
        witness, now=int(time.time()) + 3600
    )
    note.write_text(future.render(), encoding="utf-8")
    checked = run("verify-chain", "--store", store, "--checkpoint", str(note),
                  "--witness-key", witness.vkey)  # fmt: skip
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "REFUSED" in checked.stdout and "in the future" in checked.stdout
