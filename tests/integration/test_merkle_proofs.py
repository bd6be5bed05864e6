"""The sealed Merkle tree and its proofs on real stores (SQLite and PostgreSQL): proofs check
with the stand-alone verifier and against a root recomputed here from the raw log; a store
sealed before the tree gets it; tampering with the tree tables or an event is caught."""

from __future__ import annotations

import base64
import hashlib
from uuid import NAMESPACE_URL, uuid5

import pytest
from sqlalchemy import text

from auditledger.adapters import Ledger
from auditledger.adapters.tamper import merkle_verify
from auditledger.adapters.tamper.merkle_errors import NothingToProve, NotSealed, TreeDamaged
from auditledger.adapters.tamper.merkle_proofs import prove, prove_consistency
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.domain.errors import StoreError, UnknownState
from tests.support.chain_support import RawStore, Token, record_history

HISTORY = [Token((1, 2), "completed", True), Token((3,), "failed", True), Token((), "open", False)]


@pytest.fixture
def url(shared_url: str) -> str:
    record_history(shared_url, HISTORY, seed=1)
    return shared_url


def seal(url: str) -> int:
    with RawLog.open(url) as log:
        return log.seal().position


def reference_leaves(url: str) -> list[bytes]:
    """The leaf bytes of the sealed events, from the raw rows, written from merkle.py's text."""
    with RawLog.open(url) as log:
        sealed = {entry.position for batch in log.chain_entries() for entry in batch}
        leaves = [
            b"auditledger-leaf-v1\x00"
            + e.position.to_bytes(8, "big")
            + len(e.topic.encode()).to_bytes(8, "big")
            + e.topic.encode()
            + len(e.originator.encode()).to_bytes(8, "big")
            + e.originator.encode()
            + e.version.to_bytes(8, "big")
            + len(e.state).to_bytes(8, "big")
            + e.state
            for batch in log.events()
            for e in batch
            if e.position in sealed
        ]
    return leaves


def reference_root(url: str) -> tuple[int, str]:
    """(size, RFC 9162 root) of the sealed events, written from the RFC."""
    leaves = reference_leaves(url)

    def mth(part: list[bytes]) -> bytes:
        if len(part) == 1:
            return hashlib.sha256(b"\x00" + part[0]).digest()
        k = 1 << ((len(part) - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + mth(part[:k]) + mth(part[k:])).digest()

    return len(leaves), mth(leaves).hex()


def test_every_sealed_event_has_a_proof_the_stand_alone_verifier_accepts(url: str) -> None:
    seal(url)
    size, root = reference_root(url)
    positions = RawStore(url).positions()
    for leaf_index, position in enumerate(positions):
        (proof,) = prove(url, position=position)
        assert (proof.leaf_index, proof.tree_size, proof.root_hash) == (leaf_index, size, root)
        assert merkle_verify.check(proof.model_dump()) == (True, "")
        assert base64.b64decode(proof.leaf)[20:28] == position.to_bytes(8, "big")


def test_a_state_proves_each_of_its_events_and_a_call_its_call_recorded_event(url: str) -> None:
    with Ledger.open(url) as ledger:
        run = ledger.begin_run({})
        state = ledger.open_state(run_id=run, token_id="t", node_id="n", step_index=0)
        ledger.record_call(state, call_type="llm", request={"q": 1}, call_id="named-call")
        ledger.record_call(state, call_type="llm", request={"q": 2})
        ledger.complete_state(state)
        generated = str(uuid5(uuid5(NAMESPACE_URL, "auditledger:call"), f"{state}/1"))
        seal(url)
        proofs = ledger.prove(state_id=state)
        assert len(proofs) == 4 and all(merkle_verify.check(p.model_dump())[0] for p in proofs)
        for call_id in ("named-call", generated):
            (proof,) = ledger.prove(call_id=call_id)
            assert f'"call_id":"{call_id}"'.encode() in base64.b64decode(proof.leaf)
            assert proof.position in {p.position for p in proofs}
        with pytest.raises(UnknownState):
            ledger.prove(state_id="not-a-state")
        with pytest.raises(NothingToProve):
            ledger.prove(call_id="never-recorded")


def test_a_proof_against_an_older_size_and_a_consistency_proof_join_the_two_roots(
    url: str,
) -> None:
    seal(url)
    old_size, old_root = reference_root(url)
    record_history(url, [Token((5, 6), "completed", False)], seed=2, prefix="later")
    seal(url)
    new_size, new_root = reference_root(url)
    (early,) = prove(url, position=RawStore(url).positions()[1], size=old_size)
    assert (early.tree_size, early.root_hash) == (old_size, old_root)
    for old in range(1, new_size + 1):
        consistency = prove_consistency(url, old)
        assert consistency.new_root == new_root
        assert merkle_verify.check(consistency.model_dump())[0]
    joined = prove_consistency(url, old_size, new_size)
    assert (joined.old_root, joined.new_root) == (old_root, new_root)


def test_a_store_sealed_before_the_tree_existed_gets_it_at_the_next_seal(url: str) -> None:
    sealed = seal(url)
    raw = RawStore(url)
    with raw.events.begin() as conn:
        conn.execute(text("DROP TABLE merkle_tiles"))
        conn.execute(text("DROP TABLE merkle_runs"))
    raw.close()
    record_history(url, [Token((7,), "completed", False)], seed=3, prefix="after")
    assert seal(url) > sealed
    size, root = reference_root(url)
    (proof,) = prove(url, position=1)
    assert (proof.tree_size, proof.root_hash) == (size, root)


def test_the_tree_grows_batch_by_batch_to_the_same_root(url: str) -> None:
    record_history(url, [Token((1, 2, 3), "completed", False)] * 6, seed=4, prefix="more")
    with RawLog.open(url) as log:
        for batch in (1, 2, 3, 5, 16, 17):
            log.seal(batch=batch)
    size, root = reference_root(url)
    assert size == len(RawStore(url).positions())
    assert prove_consistency(url, 1).new_root == root


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 7, 1000])
def test_a_log_with_holes_proves_every_position_whichever_batches_seal_it(
    url: str, batch: int
) -> None:
    raw = RawStore(url)
    for hole in (2, 5, 6, 9):  # inserts that rolled back: a gap at or inside a batch
        raw.delete_event(hole)
    positions = raw.positions()
    raw.close()
    with RawLog.open(url) as log:
        log.seal(batch=batch)
    size, root = reference_root(url)
    assert size == len(positions)
    for leaf_index, position in enumerate(positions):
        (proof,) = prove(url, position=position)
        assert (proof.leaf_index, proof.tree_size, proof.root_hash) == (leaf_index, size, root)
    with RawLog.open(url) as log, log.events_engine.connect() as conn:
        runs = conn.execute(text("SELECT position FROM merkle_runs ORDER BY position")).all()
    assert [row[0] for row in runs] == [1, 3, 7, 10]


def reference_tiles(leaves: list[bytes]) -> list[tuple[int, int, int, bytes]]:
    """(level, tile_index, width, hashes) of every tile, from tables.merkle_tiles' text."""
    levels = [[hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append(
            [
                hashlib.sha256(b"\x01" + below[j] + below[j + 1]).digest()
                for j in range(0, len(below) - 1, 2)
            ]
        )
    tiles = []
    for level in range(0, len(levels), 4):
        for index in range(0, (len(levels[level]) + 15) // 16):
            width = min(16, len(levels[level]) - 16 * index)
            rows = [
                b"".join(levels[level + row][index * (16 >> row) :][: width >> row])
                for row in range(4)
                if level + row < len(levels)
            ]
            tiles.append((level // 4, index, width, b"".join(rows)))
    return tiles


@pytest.mark.parametrize("batches", [[1000], [1, 2, 3, 5, 16, 17, 1000], [15, 1, 16, 31, 1000]])
def test_the_stored_tiles_are_laid_out_as_documented_whatever_the_batches(
    url: str, batches: list[int]
) -> None:
    record_history(url, [Token((1, 2, 3), "completed", False)] * 12, seed=7, prefix="tiles")
    with RawLog.open(url) as log:
        for batch in batches:
            log.seal(batch=batch)
    with RawLog.open(url) as log, log.events_engine.connect() as conn:
        stored = conn.execute(
            text("SELECT level, tile_index, width, hashes FROM merkle_tiles ORDER BY 1, 2")
        ).all()
    leaves = reference_leaves(url)
    assert len(leaves) > 64
    assert [(*row[:3], bytes(row[3])) for row in stored] == reference_tiles(leaves)


def test_one_seal_goes_on_past_a_hundred_batches(url: str) -> None:
    record_history(url, [Token((1, 2, 3), "completed", False)] * 25, seed=6, prefix="many")
    events = len(RawStore(url).positions())
    assert events > 100
    with RawLog.open(url) as log:
        assert log.seal(batch=1).position == RawStore(url).positions()[-1]
    assert reference_root(url)[0] == events


def test_an_event_changed_after_sealing_no_longer_proves(url: str) -> None:
    seal(url)
    raw = RawStore(url)
    raw.flip_event_byte(3, 40)
    raw.close()
    with pytest.raises(TreeDamaged, match="position 3 no longer hashes"):
        prove(url, position=3)
    (other,) = prove(url, position=2)
    assert merkle_verify.check(other.model_dump())[0]


def test_a_changed_tree_tile_is_caught(url: str) -> None:
    seal(url)
    _, root = reference_root(url)
    raw = RawStore(url)
    with raw.events.begin() as conn:
        _, hashes = conn.execute(
            text("SELECT width, hashes FROM merkle_tiles WHERE level = 0 AND tile_index = 0")
        ).one()
        hashes = bytes(hashes)
        bent = hashes[:32] + bytes([hashes[32] ^ 1]) + hashes[33:]  # leaf 1's hash
        conn.execute(
            text("UPDATE merkle_tiles SET hashes = :h WHERE level = 0 AND tile_index = 0"),
            {"h": bent},
        )
    raw.close()
    first, second = RawStore(url).positions()[:2]
    with pytest.raises(TreeDamaged, match=f"position {second} no longer hashes"):
        prove(url, position=second)
    with pytest.raises(TreeDamaged, match="audit path of leaf 0 does not lead to the root"):
        prove(url, position=first)  # the altered hash is on its path
    with pytest.raises(TreeDamaged):
        prove_consistency(url, 1)  # leaf 1's hash is in this proof
    assert prove_consistency(url, 2).new_root == root  # not in this one: upper levels intact


def test_what_is_not_sealed_is_not_proved(url: str) -> None:
    sealed = seal(url)
    record_history(url, [Token((1,), "completed", False)], seed=5, prefix="unsealed")
    last = RawStore(url).positions()[-1]
    with pytest.raises(NotSealed):
        prove(url, position=last)
    with pytest.raises(NotSealed):
        prove(url, position=1, size=sealed + 100)


def test_a_memory_store_has_nothing_to_prove() -> None:
    with Ledger.open("memory://") as ledger, pytest.raises(StoreError):
        ledger.prove(position=1)
