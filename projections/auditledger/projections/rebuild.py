"""Rebuild: a fresh landscape from position 0, built aside and swapped in atomically.

The new landscape is built in a shadow (SQLite: a private temporary database ATTACHed to
the connection; PostgreSQL: a schema of its own), chunk by chunk, so memory stays flat.
Then ONE transaction, holding the live landscape's write lock, replaces the live rows and
the live position with the shadow's. Readers see the old landscape until that commit and
the new one after it, never a half-built one; a runner catching up meanwhile continues from
the swapped-in position, so nothing is applied twice.

Arguments are checked before anything is built (a negative `until` would swap in an empty
landscape). The skips live beside the landscape, not in it: a rebuild keeps them and passes
over the same positions.

A PostgreSQL shadow schema is held, while its rebuild lives, by a session advisory lock keyed
on its name (taken before the schema exists). A rebuild killed before its cleanup leaves the
schema but not the lock (the server drops a dead session's locks), so the next rebuild drops
every shadow schema whose lock it can take: the stale ones, never a live rebuild's.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, delete, func, insert, select, text

from auditledger.domain.values import optional_datetime

from .runner import (
    EventSource,
    Progress,
    Projector,
    ensure_position_row,
    held,
    read_position,
    require_whole,
    set_position,
)
from .schema import Landscape

SHADOW_PREFIX = "auditledger_shadow_"
SHADOW_LOCKS = 0x73686477  # "shdw": pg_advisory_lock(SHADOW_LOCKS, hashtext(schema name))


@dataclass(frozen=True)
class RebuildResult:
    events: int
    position: int
    seconds: float
    rows: dict[str, int]


@contextmanager
def shadow(conn: Connection) -> Iterator[Landscape]:
    """A private, empty copy of the landscape tables on this connection; dropped after."""
    if conn.dialect.name == "postgresql":
        drop_stale_shadows(conn)
        name = f"{SHADOW_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
        conn.execute(select(func.pg_advisory_lock(SHADOW_LOCKS, func.hashtext(name))))
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    else:
        name = "auditledger_shadow"
        conn.commit()
        conn.exec_driver_sql(f"ATTACH DATABASE '' AS {name}")
    landscape = Landscape.shadow(name)
    try:
        landscape.create(conn)
        conn.commit()
        yield landscape
    finally:
        conn.rollback()
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            conn.execute(select(func.pg_advisory_unlock(SHADOW_LOCKS, func.hashtext(name))))
            conn.commit()
        else:
            conn.exec_driver_sql(f"DETACH DATABASE {name}")
            conn.commit()


def drop_stale_shadows(conn: Connection) -> list[str]:
    """Drops the PostgreSQL shadow schemas no live rebuild holds; returns their names."""
    names = conn.scalars(
        text("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, :prefix)"),
        {"prefix": SHADOW_PREFIX},
    ).all()
    conn.commit()
    dropped = []
    for name in names:
        key = func.hashtext(name)
        if not conn.scalar(select(func.pg_try_advisory_lock(SHADOW_LOCKS, key))):
            continue  # a live rebuild's
        try:
            quoted = name.replace('"', '""')
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{quoted}" CASCADE')
            conn.commit()
            dropped.append(name)
        finally:
            conn.rollback()
            conn.execute(select(func.pg_advisory_unlock(SHADOW_LOCKS, key)))
            conn.commit()
    return dropped


def build(
    engine: Engine,
    conn: Connection,
    target: Landscape,
    source: EventSource,
    *,
    stop: int | None = None,
    until_time: datetime | None = None,
    chunk_size: int = 2000,
    progress: Progress | None = None,
) -> int:
    """Apply the log from position 0 into an empty shadow landscape; returns the events."""
    projector = Projector(engine, source, target, connect=lambda: held(conn), exclusive=False)
    return projector.catch_up(chunk_size, stop=stop, until_time=until_time, progress=progress)


def rebuild(
    engine: Engine,
    source: EventSource,
    *,
    stop: int | None = None,
    until_time: datetime | None = None,
    chunk_size: int = 2000,
    progress: Progress | None = None,
) -> RebuildResult:
    require_whole("chunk_size", chunk_size, least=1)
    if stop is not None:
        require_whole("until", stop, least=0)
    optional_datetime("until", until_time)
    started = datetime.now(UTC)
    live = Landscape.live()
    target = source.last_position() if stop is None else stop
    with engine.connect() as conn, shadow(conn) as aside:
        events = build(
            engine,
            conn,
            aside,
            source,
            stop=target,
            until_time=until_time,
            chunk_size=chunk_size,
            progress=progress,
        )
        position = swap(conn, live, aside)
        rows = {
            t.name: int(conn.scalar(select(func.count()).select_from(t)) or 0) for t in live.ordered
        }
        conn.commit()
    seconds = (datetime.now(UTC) - started).total_seconds()
    return RebuildResult(events=events, position=position, seconds=seconds, rows=rows)


def swap(conn: Connection, live: Landscape, aside: Landscape) -> int:
    """Replace the live landscape and its position with the shadow's, in one transaction."""
    conn.rollback()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        ensure_position_row(conn, live)
        read_position(conn, live, for_update=True)  # the lock every runner takes
        for table in reversed(live.ordered):
            conn.execute(delete(table))
        for table, copy in zip(live.ordered, aside.ordered, strict=True):
            names = [c.name for c in table.columns]
            conn.execute(insert(table).from_select(names, select(*(copy.c[n] for n in names))))
        position = read_position(conn, aside)
        set_position(conn, live, position)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return position
