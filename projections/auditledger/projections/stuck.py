"""Finding the event that stops catch-up, and skipping it on purpose.

`probe` applies the events after the landscape's position one at a time in a transaction it
always rolls back, so it names the first that cannot be applied without changing anything.
`skip_event` records a skip only for that event: a skip never hides an event that applies.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite

from auditledger.domain.errors import (
    InvalidArgument,
    LedgerError,
    ProjectionStuck,
    UndecodableEvent,
)
from auditledger.domain.values import require_name

from .landscape import fold
from .runner import (
    EventSource,
    ensure_position_row,
    is_transient,
    read_position,
    reason_of,
    require_whole,
    topic_of,
    write,
)
from .schema import Landscape
from .skips import Skip, next_skip, record_skip, skipped_positions

PROBED = 1000
"""How many events after the position verify tries to apply."""


def probe(
    conn: Connection, land: Landscape, source: EventSource, limit: int = PROBED
) -> tuple[int, LedgerError | None]:
    """(events tried, the first one after the position that cannot be applied, if any)."""
    try:
        position = read_position(conn, land)
        skipped = skipped_positions(conn)
        while position + 1 in skipped:
            position += 1
        skip = next_skip(skipped, position, None)
        undecodable: UndecodableEvent | None = None
        try:
            events = list(source.read(position, limit, None if skip is None else skip - 1))
        except UndecodableEvent as error:
            undecodable = error
            events = list(source.read(position, limit, error.position - 1))
        insert: Any = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert
        for tried, (at, domain_event) in enumerate(events, start=1):
            try:
                write(conn, land, fold([domain_event]), insert)
            except Exception as error:
                if is_transient(error):
                    raise
                return tried, ProjectionStuck(at, topic_of(domain_event), reason_of(error))
        return len(events) + (undecodable is not None), undecodable
    finally:
        conn.rollback()


def skip_event(engine: Engine, source: EventSource, position: int, reason: str) -> Skip:
    """Record that catch-up passes over the event at `position`, the one that stops it."""
    require_whole("position", position, least=1)
    require_name("reason", reason, max_length=10_000)
    land = Landscape.live()
    with engine.connect() as conn:
        ensure_position_row(conn, land)
        conn.commit()
        _, stuck = probe(conn, land, source, limit=1)
        if position in skipped_positions(conn):
            raise InvalidArgument("position", position, "this event is already skipped")
        at = read_position(conn, land)
        conn.rollback()
        if not isinstance(stuck, (ProjectionStuck, UndecodableEvent)) or stuck.position != position:
            raise InvalidArgument(
                "position",
                position,
                f"only the event that stops catch-up can be skipped; the landscape is at "
                f"{at} and " + ("the next event applies" if stuck is None else str(stuck)),
            )
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            if read_position(conn, land, for_update=True) != at:
                raise InvalidArgument(
                    "position", position, "the landscape moved meanwhile; try again"
                )
            skip = record_skip(conn, position, stuck.topic, reason)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return skip
