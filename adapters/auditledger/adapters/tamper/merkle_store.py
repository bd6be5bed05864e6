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
TILE_COLUMNS = ("level", "tile_index", "width", "hashes")
RUN_COLUMNS = ("position", "leaf_index")
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


def extend(
    conn: Connection, head: TreeHead, positions: Sequence[int], leaf_hashes: Sequence[bytes]
) -> TreeHead:
    """Append leaves (their log positions, strictly increasing, and their leaf hashes) after
    the tree's last leaf.

    Level by level: the new nodes of a level are a run of indexes; pairs of them (the first
    paired with its stored left sibling when its index is odd) make the next level's run."""
    if not positions:
        return head
    tiles = _Tiles(conn, head.size)
    first, hashes, level = head.size, leaf_hashes, 0
    runs: list[tuple[int, bytes]] = []
    while hashes:
        runs.append((first, b"".join(hashes)))
        if first & 1:
            hashes = [tiles.node((level, first - 1)), *hashes]
            first -= 1
        pairs = iter(hashes)  # a lone last node waits for its sibling in a later batch
        hashes = [
            _sha256(b"\x01" + left + right).digest()
            for left, right in zip(pairs, pairs, strict=False)
        ]
        first >>= 1
        level += 1
    inserts: list[Row] = []
    updates: list[Row] = []
    for tile_level in range(0, len(runs), TILE_HEIGHT):
        new, grown = tiles.grown(tile_level // TILE_HEIGHT, runs[tile_level : tile_level + 4])
        inserts += new
        updates += grown
    insert_rows(conn, merkle_tiles, TILE_COLUMNS, inserts)
    update_rows(conn, merkle_tiles, ("width", "hashes"), ("level", "tile_index"), updates)
    _write_runs(conn, head, positions)
    return TreeHead(head.size + len(positions), positions[-1])


class _Tiles:
    """The stored tiles one seal batch reads (each once), and the rows of those it grows."""

    def __init__(self, conn: Connection, size: int) -> None:
        self.conn = conn
        self.size = size
        self.stored: dict[TileKey, list[bytes] | None] = {}

    def may_exist(self, key: TileKey) -> bool:
        """Whether a tree of this size has a node in the tile."""
        level, index = key
        return self.size >> (level * TILE_HEIGHT) > index * TILE_WIDTH

    def rows(self, key: TileKey) -> list[bytes] | None:
        """A stored tile's rows of concatenated hashes; None when it is not stored."""
        if key not in self.stored:
            found = None
            if self.may_exist(key):
                found = self.conn.execute(
                    select(merkle_tiles.c.width, merkle_tiles.c.hashes).where(
                        and_(merkle_tiles.c.level == key[0], merkle_tiles.c.tile_index == key[1])
                    )
                ).first()
            self.stored[key] = (
                None if found is None else [b"".join(row) for row in decode_tile(*found)]
            )
        return self.stored[key]

    def node(self, subtree: Subtree) -> bytes:
        rows = self.rows(tile_key(subtree))
        row, place = tile_slot(subtree)
        if rows is None or len(rows[row]) < HASH * (place + 1):
            raise TreeDamaged(f"the stored tree of {self.size} leaves lacks subtree {subtree}")
        return rows[row][HASH * place : HASH * (place + 1)]

    def grown(
        self, tile_level: int, levels: list[tuple[int, bytes]]
    ) -> tuple[list[Row], list[Row]]:
        """(tile rows to insert, to update) of the tiles of one tile level that new nodes
        fall in (levels: per tree level of the tile level, the first new node's index and the
        new nodes' hashes joined). Only the first tile can be stored already: each level's
        new nodes start in it (tile index = node index >> (4 - row) at every row)."""
        first = levels[0][0]
        start = first // TILE_WIDTH
        count = (first + len(levels[0][1]) // HASH - 1) // TILE_WIDTH - start + 1
        stored = self.rows((tile_level, start))
        pieces: list[list[bytes]] = []
        for row in range(TILE_HEIGHT):
            if row >= len(levels):
                pieces.append([b""] * count)
                continue
            level_first, nodes = levels[row]
            step = HASH * (TILE_WIDTH >> row)
            offset = HASH * (start * (TILE_WIDTH >> row) - level_first)  # <= 0
            have = b"" if stored is None else stored[row]
            if len(have) != -offset:
                raise TreeDamaged(
                    f"tile {(tile_level, start)} holds {len(have) // HASH} nodes in row {row}, "
                    f"not {-offset // HASH}"
                )
            pieces.append(
                [nodes[: offset + step]]
                + [nodes[offset + step * k : offset + step * (k + 1)] for k in range(1, count)]
            )
        if stored is not None:
            for row in range(TILE_HEIGHT):
                pieces[row][0] = stored[row] + pieces[row][0]
        tiles: list[Row] = [
            (tile_level, start + k, len(row0) // HASH, b"".join((row0, *upper)))
            for k, (row0, *upper) in enumerate(zip(*pieces, strict=True))
        ]
        if stored is None:
            return tiles, []
        _, _, width, hashes = tiles[0]
        return tiles[1:], [(width, hashes, tile_level, start)]


def _write_runs(conn: Connection, head: TreeHead, positions: Sequence[int]) -> None:
    """A run row where a leaf's position does not follow its predecessor's (and for leaf 0).
    Positions strictly increase, so a batch whose last is count - 1 past its first has no
    gap inside: at most its first leaf starts a run."""
    last, index = head.last_position, head.size
    if positions[-1] - positions[0] == len(positions) - 1:
        if positions[0] != last + 1 or index == 0:
            insert_rows(conn, merkle_runs, RUN_COLUMNS, [(positions[0], index)])
        return
    runs: list[Row] = []
    for position in positions:
        if position != last + 1 or index == 0:
            runs.append((position, index))
        last = position
        index += 1
    insert_rows(conn, merkle_runs, RUN_COLUMNS, runs)
