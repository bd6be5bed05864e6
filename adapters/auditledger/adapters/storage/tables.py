"""The payload store's table: content-addressed bytes beside the event log.

It lives in the events' database (a payload is committed no later than the event naming
it), never in a landscape, so it has a MetaData of its own.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, Table

from auditledger.projections.tables import DIGEST, WHEN

metadata = MetaData()

payloads = Table(
    "payloads",
    metadata,
    Column("hash", DIGEST, primary_key=True),
    Column("data", LargeBinary),
    Column("size", BigInteger, nullable=False),
    Column("created_at", WHEN, nullable=False),
    Column("purged_at", WHEN),
)

PAYLOAD_TABLES = (payloads,)
