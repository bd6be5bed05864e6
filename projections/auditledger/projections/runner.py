"""The projection runner: applies the event log to a landscape, exactly once, in log order.

Each chunk is one transaction: take the landscape's write lock (SQLite: BEGIN IMMEDIATE;
PostgreSQL: SELECT ... FOR UPDATE on the position row), read the position, read the next
events after it, write their rows and the new position, commit. A crash anywhere rolls the
whole chunk back, so the next run starts from the last committed position and every event
is applied exactly once; two runners in two processes take turns instead of failing.

Inserts are also idempotent (ON CONFLICT (primary key) DO NOTHING), so re-applying an event
never duplicates a row; any other UNIQUE or FOREIGN KEY violation still fails loudly: the
projection proves the invariants the tables declare.

An event that cannot be applied (a value its column cannot hold, a forged event missing
fields) never wedges the runner silently: the chunk is retried one event per transaction
up to it, so everything before it is applied, and catch-up stops with ProjectionStuck
naming its position, topic and reason. Positions in `projection_skips` are passed over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, PendingRollbackError

from auditledger.domain.errors import (
    InvalidArgument,
    LedgerError,
    ProjectionStuck,
    UndecodableEvent,
)
from auditledger.domain.values import optional_datetime

from .landscape import KEYS, TIMED, Changes, fold, utc
from .schema import Landscape, chunked
from .skips import next_skip, skipped_positions

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
        """Apply what is new (up to `stop` / `until_time`); returns how many events.

        An event that cannot be applied stops it, the events before it applied: raises
        ProjectionStuck (UndecodableEvent when its stored bytes do not decode)."""
        require_whole("chunk_size", chunk_size, least=1)
        if stop is not None:
            require_whole("stop", stop, least=0)
        optional_datetime("until", until_time)
        applied = chunks = 0
        position = careful_until = 0
        with self.connect() as conn:
            ensure_position_row(conn, self.landscape)
            skipped = skipped_positions(conn)
            conn.commit()
            while max_chunks is None or chunks < max_chunks:
                limit = 1 if position < careful_until else chunk_size
                try:
                    count, position, more = self._chunk(conn, limit, stop, until_time, skipped)
                except _Unapplied as failed:
                    if limit == 1:
                        raise failed.error from None
                    careful_until = failed.last  # one event per chunk up to the culprit
                    continue
                chunks += 1
                applied += count
                if count and progress is not None:
                    progress(count, position)
                if not more:
                    break
        return applied

    def _chunk(
        self,
        conn: Connection,
        limit: int,
        stop: int | None,
        until_time: datetime | None,
        skipped: frozenset[int],
    ) -> tuple[int, int, bool]:
        self._begin(conn)
        try:
            position = read_position(conn, self.landscape, for_update=self.exclusive)
            if stop is not None and position >= stop:
                conn.rollback()
                return 0, position, False
            skip = next_skip(skipped, position, stop)
            events = self._read(position, limit, stop if skip is None else skip - 1)
            more = len(events) == limit
            whole = True
            if until_time is not None:
                kept = _before(events, until_time)
                whole = len(kept) == len(events)
                events = kept
            past_skip = skip is not None and not more and whole
            if not events and not past_skip:
                conn.rollback()
                return 0, position, False
            new_position = skip if past_skip and skip is not None else events[-1][0]
            self._apply(conn, events)
            set_position(conn, self.landscape, new_position)
            if self.before_commit is not None:
                self.before_commit(new_position)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return len(events), new_position, more or past_skip

    def _read(self, position: int, limit: int, stop: int | None) -> list[tuple[int, Any]]:
        try:
            return list(self.source.read(position, limit, stop))
        except UndecodableEvent as error:
            raise _Unapplied(error.position, error) from None

    def _apply(self, conn: Connection, events: list[tuple[int, Any]]) -> None:
        try:
            write(conn, self.landscape, fold(e for _, e in events), self._insert)
        except Exception as error:
            if is_transient(error):
                raise
            position, domain_event = events[-1]
            stuck = ProjectionStuck(position, topic_of(domain_event), reason_of(error))
            raise _Unapplied(position, stuck) from None

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


class _Unapplied(Exception):
    """A chunk that could not be applied; `error` is the typed error when it held one event."""

    def __init__(self, last: int, error: LedgerError) -> None:
        super().__init__(str(error))
        self.last = last
        self.error = error


def is_transient(error: BaseException) -> bool:
    """A lost connection, a lock or serialisation timeout: not the event's fault."""
    if isinstance(error, (OperationalError, InterfaceError, PendingRollbackError)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def reason_of(error: BaseException) -> str:
    """One line saying why an event could not be applied (a database's own words if any)."""
    inner = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    lines = str(inner).strip().splitlines()
    text = f"{type(inner).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS] + "..."


REASON_CHARS = 300


def topic_of(domain_event: object) -> str:
    kind = type(domain_event)
    return str(getattr(kind, "TOPIC", None) or f"{kind.__module__}:{kind.__qualname__}")


def require_whole(name: str, value: object, *, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InvalidArgument(name, value, f"a whole number >= {least}")
    return value


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
