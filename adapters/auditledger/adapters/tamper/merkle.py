"""The RFC 9162 (RFC 6962) Merkle tree over the sealed log, as arithmetic: no I/O.

Leaves are the sealed events in log order, leaf index 0, 1, 2, ... (not the log position).
The leaf bytes of the event at position p are the fields the chain hashes, without the
previous chain hash, behind a domain tag of their own:

    leaf(p) = "auditledger-leaf-v1" 0x00
              || u64(p)
              || u64(len(topic))      || topic        (UTF-8)
              || u64(len(originator)) || originator   (UTF-8, as chain_format.originator_text)
              || u64(version)
              || u64(len(state))      || state        (the stored bytes, as stored)

    leaf_hash = SHA-256(0x00 || leaf)        node_hash = SHA-256(0x01 || left || right)

A complete subtree is named (level, index): 2**level leaves from index * 2**level. Every
range the RFC's recursions meet (MTH of D[lo:hi]) is a run of complete subtrees, largest
first (`cover`), folded from the right (`fold`): so proofs need only complete subtrees,
which never change once written.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence

from auditledger.adapters.tamper.chain_format import DOMAIN

LEAF_DOMAIN = b"auditledger-leaf-v1\x00"
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_INPUT = b"\x00" + LEAF_DOMAIN

Subtree = tuple[int, int]
"""(level, index): the complete subtree of 2**level leaves starting at index * 2**level."""
Span = tuple[int, int]
"""[lo, hi): leaf indexes, a range whose MTH an RFC 9162 proof names."""

_HEAD = struct.Struct(">QQ")
_LEN = struct.Struct(">Q")
_TAIL = struct.Struct(">QQ")
_sha256 = hashlib.sha256


def leaf_bytes(position: int, topic: str, originator: str, version: int, state: bytes) -> bytes:
    return b"".join((LEAF_DOMAIN, *_fields(position, topic, originator, version, state)))


def _fields(
    position: int, topic: str, originator: str, version: int, state: bytes
) -> tuple[bytes, ...]:
    """The event's fields as the leaf (and the chain) serialise them, after the domain tag."""
    topic_bytes = topic.encode("utf-8")
    originator_bytes = originator.encode("utf-8")
    return (
        _HEAD.pack(position, len(topic_bytes)),
        topic_bytes,
        _LEN.pack(len(originator_bytes)),
        originator_bytes,
        _TAIL.pack(version, len(state)),
        state,
    )


def chain_and_leaf_hash(
    prev: bytes, position: int, topic: str, originator: str, version: int, state: bytes
) -> tuple[bytes, bytes]:
    """(chain_format.link of the event, its leaf hash): the chain hashes the leaf's fields
    after its own domain tag and the previous chain hash, so the sealer serialises them once."""
    fields = _fields(position, topic, originator, version, state)
    return (
        _sha256(b"".join((DOMAIN, prev, *fields))).digest(),
        _sha256(b"".join((_LEAF_INPUT, *fields))).digest(),
    )


def leaf_hash(leaf: bytes) -> bytes:
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def split(size: int) -> int:
    """The RFC's k: the largest power of two smaller than size (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def cover(span: Span) -> list[Subtree]:
    """The complete subtrees making up a span the RFC's recursion meets, largest first."""
    lo, hi = span
    size = hi - lo
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        return [(level, lo >> level)]
    found = []
    for level in range((hi - lo).bit_length() - 1, -1, -1):
        if (hi - lo) >> level & 1:
            found.append((level, lo >> level))
            lo += 1 << level
    return found


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a span from its complete subtrees' hashes, largest first."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = _sha256(b"\x01" + left + result).digest()
    return result


def inclusion_spans(index: int, size: int) -> list[Span]:
    """The spans whose MTHs are PATH(index, D[0:size]), in the RFC's order (deepest first)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    spans = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split(hi - lo)
        if index < lo + k:
            spans.append((lo + k, hi))
            hi = lo + k
        else:
            spans.append((lo, lo + k))
            lo += k
    spans.reverse()
    return spans


def consistency_spans(old: int, new: int) -> list[Span]:
    """The spans whose MTHs are PROOF(old, D[0:new]) (RFC 9162 2.1.4.1), in its order."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    if old in (0, new):
        return []
    spans = []
    lo, hi, m, whole = 0, new, old, True
    while m != hi - lo:
        k = split(hi - lo)
        if m <= k:
            spans.append((lo + k, hi))
            hi = lo + k
        else:
            spans.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    if not whole:
        spans.append((lo, hi))
    spans.reverse()
    return spans


def span_hashes(spans: Iterable[Span], node: Callable[[Subtree], bytes]) -> list[bytes]:
    return [fold([node(subtree) for subtree in cover(span)]) for span in spans]


def root(size: int, node: Callable[[Subtree], bytes]) -> bytes:
    return EMPTY_ROOT if size == 0 else fold([node(subtree) for subtree in cover((0, size))])


def frontier(size: int) -> list[Subtree]:
    """The complete subtrees a tree of `size` leaves is appended to (its compact range)."""
    return cover((0, size))


def append(
    size: int, edge: dict[int, bytes], leaf_hashes: Iterable[bytes]
) -> list[tuple[int, int, bytes]]:
    """Append leaves to a tree of `size` whose compact range is `edge` (level -> hash, updated
    in place); returns every subtree completed, as (level, index, hash)."""
    completed = []
    for carry in leaf_hashes:
        index, level = size, 0
        completed.append((0, index, carry))
        while index & 1:
            carry = _sha256(b"\x01" + edge.pop(level) + carry).digest()
            index >>= 1
            level += 1
            completed.append((level, index, carry))
        edge[level] = carry
        size += 1
    return completed
