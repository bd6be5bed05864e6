"""The Merkle arithmetic and the stand-alone verifier, against published RFC 9162 vectors
(tests/data/rfc9162_vectors.json) and a naive reference tree written from the RFC here."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditledger.adapters.tamper import merkle_verify
from auditledger.adapters.tamper.chain_format import link
from auditledger.adapters.tamper.merkle import (
    EMPTY_ROOT,
    append,
    chain_and_leaf_hash,
    consistency_spans,
    inclusion_spans,
    leaf_bytes,
    leaf_hash,
    root,
    span_hashes,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "data" / "rfc9162_vectors.json").read_text(encoding="utf-8")
)


def reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, recursively, straight from the text."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(leaves[:k]) + reference_mth(leaves[k:])).digest()


def reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n])."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*reference_path(m, leaves[:k]), reference_mth(leaves[k:])]
    return [*reference_path(m - k, leaves[k:]), reference_mth(leaves[:k])]


def reference_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(leaves)
    if m == n:
        return [] if whole else [reference_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*reference_subproof(m, leaves[:k], whole), reference_mth(leaves[k:])]
    return [*reference_subproof(m - k, leaves[k:], False), reference_mth(leaves[:k])]


class MemoryTree:
    """The tree as the sealer builds it (append, then complete subtrees), kept in a dict."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        for level, index, digest in append(0, {}, (leaf_hash(leaf) for leaf in leaves)):
            self.nodes[(level, index)] = digest
        self.size = len(leaves)

    def node(self, subtree: tuple[int, int]) -> bytes:
        return self.nodes[subtree]

    def root(self, size: int) -> bytes:
        return root(size, self.node)

    def path(self, index: int, size: int) -> list[bytes]:
        return span_hashes(inclusion_spans(index, size), self.node)

    def consistency(self, old: int, new: int) -> list[bytes]:
        return span_hashes(consistency_spans(old, new), self.node)


VECTOR_LEAVES = [bytes.fromhex(leaf) for leaf in VECTORS["leaf_inputs"]]


def test_roots_of_every_size_match_the_published_roots() -> None:
    tree = MemoryTree(VECTOR_LEAVES)
    assert [tree.root(size).hex() for size in range(9)] == VECTORS["root_hashes_by_size"]


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda case: case["file"])
def test_the_stand_alone_verifier_agrees_with_every_published_inclusion_case(
    case: dict[str, Any],
) -> None:
    holds = merkle_verify.verify_inclusion(
        case["leaf_index"],
        case["tree_size"],
        bytes.fromhex(case["leaf_hash"] or ""),
        [bytes.fromhex(h) for h in case["proof"]],
        bytes.fromhex(case["root"] or ""),
    )
    assert holds is not case["want_error"]


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda case: case["file"])
def test_the_stand_alone_verifier_agrees_with_every_published_consistency_case(
    case: dict[str, Any],
) -> None:
    holds = merkle_verify.verify_consistency(
        case["size1"],
        case["size2"],
        bytes.fromhex(case["root1"] or ""),
        bytes.fromhex(case["root2"] or ""),
        [bytes.fromhex(h) for h in case["proof"]],
    )
    assert holds is not case["want_error"]


def test_our_proofs_equal_the_published_happy_paths() -> None:
    tree = MemoryTree(VECTOR_LEAVES)
    roots = VECTORS["root_hashes_by_size"]
    ours = [  # the happy paths over the published 8 leaves (others use other leaves)
        case
        for case in VECTORS["inclusion"]
        if not case["want_error"]
        and case["root"] == roots[case["tree_size"]]
        and case["leaf_hash"] == tree.node((0, case["leaf_index"])).hex()
    ]
    assert len(ours) >= 3
    for case in ours:
        path = tree.path(case["leaf_index"], case["tree_size"])
        assert path == [bytes.fromhex(h) for h in case["proof"]], case["file"]
    consistent = [
        case
        for case in VECTORS["consistency"]
        if not case["want_error"]
        and case["root1"] == roots[case["size1"]]
        and case["root2"] == roots[case["size2"]]
    ]
    assert len(consistent) >= 3
    for case in consistent:
        proof = tree.consistency(case["size1"], case["size2"])
        assert proof == [bytes.fromhex(h) for h in case["proof"]], case["file"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40))
def test_every_proof_of_every_size_equals_the_reference_and_verifies(
    leaves: list[bytes],
) -> None:
    tree = MemoryTree(leaves)
    for size in range(1, len(leaves) + 1):
        expected_root = reference_mth(leaves[:size])
        assert tree.root(size) == expected_root
        for index in range(size):
            path = tree.path(index, size)
            assert path == reference_path(index, leaves[:size])
            digest = leaf_hash(leaves[index])
            assert merkle_verify.verify_inclusion(index, size, digest, path, expected_root)
            if path:
                bent = [*path[:-1], bytes([path[-1][0] ^ 1]) + path[-1][1:]]
                assert not merkle_verify.verify_inclusion(index, size, digest, bent, expected_root)
        for old in range(1, size + 1):
            proof = tree.consistency(old, size)
            assert proof == (reference_subproof(old, leaves[:size], True) if old < size else [])
            old_root = reference_mth(leaves[:old])
            assert merkle_verify.verify_consistency(old, size, old_root, expected_root, proof)
            if proof:
                bent = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
                assert not merkle_verify.verify_consistency(
                    old, size, old_root, expected_root, bent
                )


def test_the_empty_tree_has_the_hash_of_nothing() -> None:
    assert MemoryTree([]).root(0) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_leaf_bytes_are_the_documented_length_prefixed_fields() -> None:
    expected = (
        b"auditledger-leaf-v1\x00"
        + struct.pack(">Q", 7)
        + struct.pack(">Q", 5)
        + b"topic"
        + struct.pack(">Q", 3)
        + b"abc"
        + struct.pack(">Q", 2)
        + struct.pack(">Q", 4)
        + b'{"a"'
    )
    assert leaf_bytes(7, "topic", "abc", 2, b'{"a"') == expected


def test_the_verifier_checks_a_printed_proof_and_rejects_a_leaf_that_does_not_hash() -> None:
    leaves = [b"a", b"b", b"c"]
    tree = MemoryTree(leaves)
    printed = {
        "leaf_index": 2,
        "tree_size": 3,
        "leaf": base64.b64encode(b"c").decode(),
        "leaf_hash": leaf_hash(b"c").hex(),
        "audit_path": [h.hex() for h in tree.path(2, 3)],
        "root_hash": tree.root(3).hex(),
    }
    assert merkle_verify.check(printed) == (True, "")
    forged = {**printed, "leaf": base64.b64encode(b"x").decode()}
    assert merkle_verify.check(forged)[0] is False


def test_the_stand_alone_verifier_imports_only_the_standard_library() -> None:
    source = Path(merkle_verify.__file__).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


@given(st.integers(1, 2**40), st.text(max_size=20), st.text(max_size=40), st.binary(max_size=64))
def test_the_sealers_two_hashes_are_the_chains_own_link_and_the_leaf_hash(
    position: int, topic: str, originator: str, state: bytes
) -> None:
    prev = hashlib.sha256(state).digest()
    assert chain_and_leaf_hash(prev, position, topic, originator, 3, state) == (
        link(prev, position, topic, originator, 3, state),
        leaf_hash(leaf_bytes(position, topic, originator, 3, state)),
    )
