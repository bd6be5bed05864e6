"""The projection runner: applies the event log to a landscape, exactly once, in log order.

Each chunk is one transaction: take the landscape's write lock (SQLite: BEGIN IMMEDIATE;
PostgreSQL: SELECT ... FOR UPDATE on the position row), read the position, read the next
events after it, write their rows and the new position, commit. A crash anywhere rolls the
whole chunk back, so the next run starts from the last committed position and every event
is applied exactly once; two runners in two processes take turns instead of failing.

Inserts are also idempotent (ON CONFLICT (primary key) DO NOTHING), so re-applying an event
never duplicates a row; any other UNIQUE or FOREIGN KEY violation still fails loudly: the
projection proves the invariants the tables declare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .landscape import KEYS, TIMED, Changes, fold, utc
from .schema import Landscape, chunked

PROJECTION = "landscape"


class EventSource(Protocol):
    """The narrow port through which projections read the event log."""

    def read(self, after: int, limit: int, stop: int | None = None) -> Sequence[tuple[int, Any]]:
        """Up to `limit` (position, domain event) pairs with after < position <= stop."""

    def last_position(self) -> int:
        """The position of the last event in the log (0 when empty)."""


Progress = Callable[[int, int], None]
"""Called after each committed chunk with (events in the chunk, new position)."""


class Projector:
    def __init__(
        self,
        engine: Engine,
        source: EventSource,
        landscape: Landscape | None = None,
        *,
        connect: Callable[[], AbstractContextManager[Connection]] | None = None,
        exclusive: bool = True,
        before_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.source = source
        self.landscape = landscape or Landscape.live()
        self.connect = connect or engine.connect
        self.exclusive = exclusive
        self.before_commit = before_commit
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert

    def position(self) -> int:
        with self.connect() as conn:
            value = read_position(conn, self.landscape)
            conn.rollback()
        return value

    def catch_up(
        self,
        chunk_size: int = 1000,
        *,
        stop: int | None = None,
        until_time: datetime | None = None,
        progress: Progress | None = None,
        max_chunks: int | None = None,
    ) -> int:
        """Apply what is new (up to `stop` / `until_time`); returns how many events."""
        applied = chunks = 0
        with self.connect() as conn:
            ensure_position_row(conn, self.landscape)
            conn.commit()
            while max_chunks is None or chunks < max_chunks:
                count, position, more = self._chunk(conn, chunk_size, stop, until_time)
                chunks += 1
                applied += count
                if count and progress is not None:
                    progress(count, position)
                if not more:
                    break
        return applied

    def _chunk(
        self, conn: Connection, limit: int, stop: int | None, until_time: datetime | None
    ) -> tuple[int, int, bool]:
        self._begin(conn)
        try:
            position = read_position(conn, self.landscape, for_update=self.exclusive)
            if stop is not None and position >= stop:
                conn.rollback()
                return 0, position, False
            events = list(self.source.read(position, limit, stop))
            more = len(events) == limit
            if until_time is not None:
                kept = _before(events, until_time)
                more = more and len(kept) == len(events)
                events = kept
            if not events:
                conn.rollback()
                return 0, position, False
            new_position = events[-1][0]
            write(conn, self.landscape, fold(e for _, e in events), self._insert)
            set_position(conn, self.landscape, new_position)
            if self.before_commit is not None:
                self.before_commit(new_position)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return len(events), new_position, more

    def _begin(self, conn: Connection) -> None:
        if conn.in_transaction():
            conn.rollback()
        if self.exclusive and conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")


# The position row: the one place that reads, locks and moves it (runners, swap, verify).


def ensure_position_row(conn: Connection, land: Landscape) -> None:
    """The projection's position row exists (at 0 when new); not committed here."""
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert
    conn.execute(
        insert(land.positions)
        .values(projection=PROJECTION, position=0, updated_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=["projection"])
    )


def read_position(conn: Connection, land: Landscape, *, for_update: bool = False) -> int:
    """The landscape's position; for_update locks the row on PostgreSQL (on SQLite the
    caller's BEGIN IMMEDIATE already holds the database's write lock)."""
    positions = land.positions
    query = select(positions.c.position).where(positions.c.projection == PROJECTION)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return int(conn.scalar(query) or 0)


def set_position(conn: Connection, land: Landscape, position: int) -> None:
    conn.execute(
        update(land.positions)
        .where(land.positions.c.projection == PROJECTION)
        .values(position=position, updated_at=datetime.now(UTC))
    )


def _before(events: list[tuple[int, Any]], until_time: datetime) -> list[tuple[int, Any]]:
    """The events up to the first one recorded after `until_time` (the log's prefix then)."""
    limit = utc(until_time)
    for index, (_, domain_event) in enumerate(events):
        if utc(domain_event.timestamp) > limit:
            return events[:index]
    return events


def write(conn: Connection, landscape: Landscape, changes: Changes, insert: Any) -> None:
    """One bulk insert per table (dependency order), then bulk updates grouped by columns."""
    for live, inserts in changes.inserts.items():  # KEYS' order: tables.py's, dependencies first
        if inserts:
            statement = insert(landscape[live]).on_conflict_do_nothing(index_elements=KEYS[live])
            conn.execute(statement, list(inserts.values()))
    for live in TIMED:
        keys = changes.needing_start(live)
        if keys:
            changes.set_durations(live, _started(conn, landscape, live, keys))
    for live, patches in changes.patches.items():
        if patches:
            _update(conn, landscape, live, patches)


def _started(
    conn: Connection, landscape: Landscape, live: Table, keys: list[Any]
) -> dict[Any, datetime]:
    table = landscape[live]
    key_column = table.c[KEYS[live][0]]
    found: dict[Any, datetime] = {}
    for chunk in chunked(keys):
        query = select(key_column, table.c.started_at).where(key_column.in_(chunk))
        found.update((row[0], row[1]) for row in conn.execute(query))
    return found


def _update(conn: Connection, landscape: Landscape, live: Table, patches: dict[Any, Any]) -> None:
    table = landscape[live]
    (key_name,) = KEYS[live]  # only tables with a one-column key are patched
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for key, values in patches.items():
        groups.setdefault(frozenset(values), []).append({"_key": key, **values})
    where = table.c[key_name] == bindparam("_key")
    for rows in groups.values():
        conn.execute(update(table).where(where), rows)


@contextmanager
def held(conn: Connection) -> Iterator[Connection]:
    """A connection factory that always hands out the same (already open) connection."""
    yield conn
