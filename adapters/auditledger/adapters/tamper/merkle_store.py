"""The Merkle tree's tables: extended by the sealer inside its transaction, read for proofs.

Invariants: the tree's leaves are the chain's entries, in position order, no more and no
fewer once a seal returns (the sealer writes both in one transaction; a store sealed before
the tree existed gets its tree built by the next seal). Only complete subtrees are stored, in
tiles of 4 levels (tables.merkle_tiles); a stored hash never changes, a tile only grows. The
tree size is the leaves in the level-0 tiles; `merkle_runs` maps positions to leaf indexes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, and_, delete, select

from auditledger.adapters.tamper.driver_rows import Row, insert_rows, update_rows
from auditledger.adapters.tamper.merkle import Subtree
from auditledger.adapters.tamper.merkle_errors import TreeDamaged
from auditledger.adapters.tamper.tables import merkle_runs, merkle_tiles

TILE_HEIGHT = 4
TILE_WIDTH = 1 << TILE_HEIGHT
HASH = 32

TileKey = tuple[int, int]
_sha256 = hashlib.sha256


@dataclass(frozen=True)
class TreeHead:
    size: int
    last_position: int
    """The log position of the last leaf; 0 for the empty tree."""


def tile_key(subtree: Subtree) -> TileKey:
    level, index = subtree
    return level // TILE_HEIGHT, index >> (TILE_HEIGHT - level % TILE_HEIGHT)


def tile_slot(subtree: Subtree) -> tuple[int, int]:
    """(row in its tile, place in that row)."""
    level, index = subtree
    row = level % TILE_HEIGHT
    return row, index & ((TILE_WIDTH >> row) - 1)


ROW_STARTS = [
    [HASH * sum(width >> r for r in range(row)) for row in range(TILE_HEIGHT)]
    for width in range(TILE_WIDTH + 1)
]
"""ROW_STARTS[width][row]: where a row's hashes begin in a tile of that width."""


def node_in_tile(width: int, hashes: bytes, row: int, place: int) -> bytes | None:
    if place >= width >> row:
        return None
    offset = ROW_STARTS[width][row] + HASH * place
    return hashes[offset : offset + HASH]


def decode_tile(width: int, hashes: bytes) -> list[list[bytes]]:
    rows, offset = [], 0
    for row in range(TILE_HEIGHT):
        count = width >> row
        rows.append([hashes[offset + HASH * k : offset + HASH * (k + 1)] for k in range(count)])
        offset += HASH * count
    return rows


def read_head(conn: Connection) -> TreeHead:
    last_tile = conn.execute(
        select(merkle_tiles.c.tile_index, merkle_tiles.c.width)
        .where(merkle_tiles.c.level == 0)
        .order_by(merkle_tiles.c.tile_index.desc())
        .limit(1)
    ).first()
    if last_tile is None:
        return TreeHead(0, 0)
    size = last_tile[0] * TILE_WIDTH + last_tile[1]
    run = conn.execute(
        select(merkle_runs.c.position, merkle_runs.c.leaf_index)
        .order_by(merkle_runs.c.position.desc())
        .limit(1)
    ).first()
    if run is None:
        raise TreeDamaged(f"the tree holds {size} leaves and merkle_runs no position")
    return TreeHead(size, run[0] + (size - 1 - run[1]))


def head_under(conn: Connection, sealed_position: int) -> TreeHead:
    """The tree's head for a chain sealed up to `sealed_position`. A tree reaching past the
    chain (chain rows deleted, as a rewrite of the log would) is dropped, to be rebuilt from
    the chain as it now stands; only a root kept elsewhere can tell the difference."""
    head = read_head(conn)
    if head.last_position <= sealed_position:
        return head
    conn.execute(delete(merkle_tiles))
    conn.execute(delete(merkle_runs))
    return TreeHead(0, 0)


def extend(conn: Connection, head: TreeHead, leaves: Sequence[tuple[int, bytes]]) -> TreeHead:
    """Append (position, leaf bytes) pairs, in log order, after the tree's last leaf.

    Level by level: the new nodes of a level are a run of indexes; pairs of them (the first
    paired with its stored left sibling when its index is odd) make the next level's run."""
    if not leaves:
        return head
    tiles = _Tiles(conn, head.size)
    first, hashes = head.size, [_sha256(b"\x00" + leaf).digest() for _, leaf in leaves]
    level = 0
    while hashes:
        tiles.put_run(level, first, hashes)
        if first & 1:
            hashes = [tiles.node((level, first - 1)), *hashes]
            first -= 1
        hashes = [
            _sha256(b"\x01" + left + right).digest()
            for left, right in zip(hashes[0::2], hashes[1::2], strict=False)
        ]
        first >>= 1
        level += 1
    tiles.write()
    _write_runs(conn, head, leaves)
    return TreeHead(head.size + len(leaves), leaves[-1][0])


class _Tiles:
    """The tiles one seal batch reads and grows (rows of concatenated hashes), then writes."""

    def __init__(self, conn: Connection, size: int) -> None:
        self.conn = conn
        self.size = size
        self.rows: dict[TileKey, list[bytearray] | None] = {}
        self.stored: set[TileKey] = set()
        self.touched: set[TileKey] = set()

    def may_exist(self, key: TileKey) -> bool:
        """Whether a tree of this size has a node in the tile."""
        level, index = key
        return self.size >> (level * TILE_HEIGHT) > index * TILE_WIDTH

    def get(self, key: TileKey) -> list[bytearray] | None:
        if key not in self.rows:
            found = None
            if self.may_exist(key):
                found = self.conn.execute(
                    select(merkle_tiles.c.width, merkle_tiles.c.hashes).where(
                        and_(merkle_tiles.c.level == key[0], merkle_tiles.c.tile_index == key[1])
                    )
                ).first()
            self.rows[key] = None
            if found is not None:
                self.stored.add(key)
                self.rows[key] = [bytearray(b"".join(row)) for row in decode_tile(*found)]
        return self.rows[key]

    def node(self, subtree: Subtree) -> bytes:
        rows = self.get(tile_key(subtree))
        row, place = tile_slot(subtree)
        if rows is None or len(rows[row]) < HASH * (place + 1):
            raise TreeDamaged(f"the stored tree of {self.size} leaves lacks subtree {subtree}")
        return bytes(rows[row][HASH * place : HASH * (place + 1)])

    def put_run(self, level: int, first: int, hashes: list[bytes]) -> None:
        """Nodes first, first + 1, ... of a level, into the tiles they fall in."""
        row, per_tile = level % TILE_HEIGHT, TILE_WIDTH >> (level % TILE_HEIGHT)
        done, end = 0, first + len(hashes)
        while first + done < end:
            index = first + done
            key = (level // TILE_HEIGHT, index // per_tile)
            rows = self.get(key)
            if rows is None:
                rows = self.rows[key] = [bytearray() for _ in range(TILE_HEIGHT)]
            if len(rows[row]) != HASH * (index % per_tile):
                raise TreeDamaged(
                    f"tile {key} holds {len(rows[row]) // HASH} nodes in row {row}, "
                    f"not {index % per_tile}"
                )
            take = min(end, (index // per_tile + 1) * per_tile) - index
            rows[row] += b"".join(hashes[done : done + take])
            done += take
            self.touched.add(key)

    def write(self) -> None:
        inserts: list[Row] = []
        updates: list[Row] = []
        for key in sorted(self.touched):
            rows = self.rows[key]
            assert rows is not None
            width, hashes = len(rows[0]) // HASH, bytes(b"".join(rows))
            if key in self.stored:
                updates.append((width, hashes, *key))
            else:
                inserts.append((*key, width, hashes))
        insert_rows(self.conn, merkle_tiles, ("level", "tile_index", "width", "hashes"), inserts)
        update_rows(self.conn, merkle_tiles, ("width", "hashes"), ("level", "tile_index"), updates)


def _write_runs(conn: Connection, head: TreeHead, leaves: Sequence[tuple[int, bytes]]) -> None:
    runs: list[Row] = []
    last, index = head.last_position, head.size
    for position, _ in leaves:
        if position != last + 1 or index == 0:
            runs.append((position, index))
        last = position
        index += 1
    insert_rows(conn, merkle_runs, ("position", "leaf_index"), runs)
