"""The hash chain's table and the Merkle tree's, beside the event log (see chain_format.py,
merkle.py and merkle_store.py).

Written only by the sealer, never part of a landscape rebuild: a MetaData of its own.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, Table

from auditledger.projections.tables import DIGEST, WHEN

metadata = MetaData()

chain = Table(
    "chain",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("prev_position", BigInteger, nullable=False),
    Column("chain_hash", DIGEST, nullable=False),
    Column("sealed_at", WHEN, nullable=False),
)

merkle_tiles = Table(
    "merkle_tiles",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("tile_index", BigInteger, primary_key=True, autoincrement=False),
    Column("width", Integer, nullable=False),
    Column("hashes", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)
"""Tile (level t, tile_index i) holds the complete subtrees of tree levels 4t .. 4t+3 under
node (4t+4, i): `width` (1..16) nodes of level 4t, then width >> 1 of level 4t+1, width >> 2,
width >> 3, 32 bytes each, concatenated."""

merkle_runs = Table(
    "merkle_runs",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("leaf_index", BigInteger, nullable=False),
)
"""Where log positions jump: the leaf at `leaf_index` is at `position`, and the leaves after
it, up to the next run, at the positions after it (one row per gap in the log)."""

CHAIN_TABLES = (chain, merkle_tiles, merkle_runs)
