"""Check auditledger's Merkle proofs with nothing but this file and the Python standard library.

Stand-alone on purpose: it imports nothing from auditledger, so an auditor can copy this one
file and check what `auditledger prove` and `auditledger consistency --old --new` printed:

    python merkle_verify.py proofs.json            # exit 0: every proof holds; 1: one fails

The checks are RFC 9162 section 2.1.3.2 (inclusion) and 2.1.4.2 (consistency), written from
the RFC's text, with SHA-256, leaf hash SHA-256(0x00 || leaf), node hash
SHA-256(0x01 || left || right). An inclusion proof is JSON with `leaf_index`, `tree_size`,
`leaf` (base64 of the leaf bytes), `leaf_hash`, `audit_path` and `root_hash` (hex); a
consistency proof has `old_size`, `new_size`, `old_root`, `new_root` and `proof` (hex). The
file may hold one proof, a list of them, or {"proofs": [...]}.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sys
from collections.abc import Sequence
from typing import Any


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash_: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does `path` prove the leaf hash at leaf_index in the tree's root?"""
    if leaf_index < 0 or leaf_index >= tree_size or not _digests(leaf_hash_, root, *path):
        return False
    fn, sn = leaf_index, tree_size - 1
    r = leaf_hash_
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree of old_size (old_root) a prefix of new_size (new_root)?"""
    if old_size <= 0 or new_size < old_size:
        return False  # from the empty tree, a consistency proof proves nothing
    if old_size == new_size:
        return not proof and old_root == new_root
    if not _digests(old_root, new_root, *proof):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def _digests(*values: bytes) -> bool:
    return all(len(value) == 32 for value in values)


def check(proof: dict[str, Any]) -> tuple[bool, str]:
    """One printed proof (inclusion or consistency): whether it holds, and why not."""
    try:
        if "audit_path" in proof:
            leaf = base64.b64decode(proof["leaf"], validate=True)
            claimed = bytes.fromhex(proof["leaf_hash"])
            if leaf_hash(leaf) != claimed:
                return False, "leaf_hash is not SHA-256(0x00 || leaf)"
            path = [bytes.fromhex(h) for h in proof["audit_path"]]
            holds = verify_inclusion(
                int(proof["leaf_index"]),
                int(proof["tree_size"]),
                claimed,
                path,
                bytes.fromhex(proof["root_hash"]),
            )
            return holds, "" if holds else "the audit path does not lead to root_hash"
        holds = verify_consistency(
            int(proof["old_size"]),
            int(proof["new_size"]),
            bytes.fromhex(proof["old_root"]),
            bytes.fromhex(proof["new_root"]),
            [bytes.fromhex(h) for h in proof["proof"]],
        )
        return holds, "" if holds else "the proof does not join old_root to new_root"
    except (KeyError, TypeError, ValueError, binascii.Error) as error:
        return False, f"not a proof: {error!r}"


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python merkle_verify.py PROOFS.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as source:
        body = json.load(source)
    proofs = body.get("proofs", [body]) if isinstance(body, dict) else body
    failed = 0
    for number, proof in enumerate(proofs):
        holds, why = check(proof)
        print(f"proof {number}: {'holds' if holds else 'FAILS: ' + why}")
        failed += not holds
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
