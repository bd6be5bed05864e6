"""The skips: log positions the projection passes over, the one way out of a stuck catch-up.

A skip is recorded, never silent: its position, the event's topic, the reason given and
when. The event stays in the log; catch-up and rebuild pass over the same positions; every
verify report lists each skip.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import Connection, insert, select

from .tables import projection_skips


class Skip(BaseModel):
    position: int
    topic: str
    reason: str
    skipped_at: datetime


def skipped_positions(conn: Connection) -> frozenset[int]:
    return frozenset(int(p) for p in conn.scalars(select(projection_skips.c.position)))


def skips(conn: Connection) -> list[Skip]:
    table = projection_skips
    rows = conn.execute(select(table).order_by(table.c.position))
    return [Skip.model_validate(dict(row._mapping)) for row in rows]


def record_skip(conn: Connection, position: int, topic: str, reason: str) -> Skip:
    """Inserts the skip (not committed here)."""
    skip = Skip(position=position, topic=topic, reason=reason, skipped_at=datetime.now(UTC))
    conn.execute(insert(projection_skips).values(**skip.model_dump()))
    return skip


def next_skip(positions: Iterable[int], after: int, stop: int | None) -> int | None:
    """The first skipped position after `after` (and at or before `stop`), if any."""
    ahead = [p for p in positions if p > after and (stop is None or p <= stop)]
    return min(ahead, default=None)
