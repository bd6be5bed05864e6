"""The hash chain's table, beside the event log (see chain_format.py).

Written only by the sealer, never part of a landscape rebuild: a MetaData of its own.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, Table

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

CHAIN_TABLES = (chain,)
