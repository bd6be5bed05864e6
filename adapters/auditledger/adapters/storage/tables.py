"""The payload store's table: content-addressed bytes beside the event log.

It lives in the events' database (a payload is committed no later than the event naming
it), never in a landscape, so it has a MetaData of its own.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, Table, Text

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

payload_erasures = Table(
    "payload_erasures",
    metadata,
    Column("hash", DIGEST, primary_key=True),
    Column("erasure_id", Text, nullable=False),
    Column("erased_at", WHEN, nullable=False),
    Column("reason", Text, nullable=False),
)
"""Why an erased payload's bytes are gone: its row in `payloads` has data NULL and purged_at
set (so a reader that knows only purges sees it purged, never missing), and a row here."""

PAYLOAD_TABLES = (payloads, payload_erasures)
