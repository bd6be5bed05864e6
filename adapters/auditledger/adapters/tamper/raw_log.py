"""The raw tables tamper evidence reads and writes: the event log, the chain, the payloads.

Needs no Ledger and no running application: point it at a store URL (or a copy of one).
SQLite: DIR/events.sqlite3 (`stored_events`, position = rowid) holds the chain and the
payloads beside the log (docs/architecture.md, "Storage layout", for older directories).
PostgreSQL: one database, `auditledger_events` (position = notification_id), `chain`,
`payloads`.

Sealing follows the log in order and never seals past a position that may still fill: on
PostgreSQL it first takes a SHARE lock on the event table, which waits for every transaction
that has inserted (and so drawn a notification id) to commit or roll back; the highest id
visible then is a safe horizon whatever insert path writers use. Concurrent sealers are
serialised (PostgreSQL: a lock on `chain`; SQLite: the write lock, retried on conflict).
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError

from auditledger.adapters.storage.engines import build_engine
from auditledger.adapters.storage.errors import first_line, shown, store_errors
from auditledger.adapters.storage.settings import StoreSettings
from auditledger.adapters.storage.tables import payload_erasures, payloads
from auditledger.adapters.tamper.chain_format import GENESIS, originator_text
from auditledger.adapters.tamper.driver_rows import bound, insert_rows
from auditledger.adapters.tamper.merkle import chain_and_leaf_hash
from auditledger.adapters.tamper.merkle_store import extend, head_under
from auditledger.adapters.tamper.tables import CHAIN_TABLES, chain, metadata
from auditledger.domain.errors import StoreError
from auditledger.domain.payload_status import Erased, Removal

_PAYLOAD_CHUNK = 5_000 if sqlite3.sqlite_version_info >= (3, 32) else 500
"""Digests looked up per query: SQLite allows 32,766 parameters since 3.32 (999 before);
fewer, larger queries make the verifier's payload reads cheaper."""


CHAIN_COLUMNS = ("position", "prev_position", "chain_hash", "sealed_at")


class RawEvent(NamedTuple):
    """One event as stored in the log, read raw for the chain (not eventsourcing's StoredEvent)."""

    position: int
    topic: str
    originator: str
    version: int
    state: bytes


class ChainEntry(NamedTuple):
    position: int
    prev_position: int
    chain_hash: str


@dataclass(frozen=True)
class Head:
    position: int
    chain_hash: str


@dataclass
class RawLog:
    """The raw stored log, chain and payloads behind a store URL: read for verifying, sealed."""

    url: str
    events_engine: Engine
    payloads_engine: Engine
    events_table: str
    position_column: str
    read_only: bool = False
    # tables seen to exist (a table that exists stays): looked up once, not once per batch
    _present: set[tuple[int, str]] = field(default_factory=set, init=False, repr=False)

    @classmethod
    def open(cls, url: str, *, read_only: bool = False) -> RawLog:
        """read_only: every file opened so that nothing can be written, nor created beside
        it (an auditor's copy); sealing is then refused by the database."""
        settings = StoreSettings.parse(url)
        if settings.kind == "memory":
            raise StoreError(
                f"store {url!r}: tamper evidence needs a SQLite directory or PostgreSQL "
                "(memory:// keeps no log to seal)"
            )
        if settings.kind == "sqlite":
            assert settings.directory is not None
            events_file = settings.sqlite_file("events")
            if not events_file.is_file():
                raise StoreError(f"store {url!r}: no event log at {events_file}")
            events = build_engine(f"sqlite:///{events_file.as_posix()}", read_only=read_only)
            if settings.payloads_with_events:
                return cls(url, events, events, "stored_events", "rowid", read_only)
            payload_file = settings.sqlite_file("payloads")
            payload_engine = build_engine(
                f"sqlite:///{payload_file.as_posix()}", read_only=read_only
            )
            return cls(url, events, payload_engine, "stored_events", "rowid", read_only)
        engine = build_engine(settings.postgres_url(), read_only=read_only)
        return cls(url, engine, engine, "auditledger_events", "notification_id", read_only)

    def close(self) -> None:
        self.events_engine.dispose()
        if self.payloads_engine is not self.events_engine:
            self.payloads_engine.dispose()

    def __enter__(self) -> RawLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # reading

    def _guard(self, what: str) -> AbstractContextManager[None]:
        return store_errors(f"{what} in the store", self.url)

    def has_table(self, engine: Engine, name: str) -> bool:
        key = (id(engine), name)
        if key in self._present:
            return True
        with self._guard(f"looking for table {name}"):
            found = inspect(engine).has_table(name)
        if found:
            self._present.add(key)
        return found

    def events(
        self, after: int = 0, until: int | None = None, batch: int = 10_000
    ) -> Iterator[list[RawEvent]]:
        """The stored events after a position, in log order, a batch at a time."""
        if not self.has_table(self.events_engine, self.events_table):
            return
        column = self.position_column
        bound = "" if until is None else f" AND {column} <= {self._ph('until')}"
        statement = (
            f"SELECT {column}, topic, originator_id, originator_version, state "
            f"FROM {self.events_table} WHERE {column} > {self._ph('after')}{bound} "
            f"ORDER BY {column} LIMIT {self._ph('limit')}"
        )
        while True:
            params = {"after": after, "limit": batch, "until": until}
            rows = self._fetch(self.events_engine, statement, params, "reading the event log")
            if not rows:
                return
            yield [
                RawEvent(
                    position,
                    topic,
                    originator if type(originator) is str else originator_text(originator),
                    version,
                    state if type(state) is bytes else as_bytes(state),
                )
                for position, topic, originator, version, state in rows
            ]
            after = rows[-1][0]

    def last_position(self) -> int:
        """The position of the last stored event (0 when the log is empty)."""
        if not self.has_table(self.events_engine, self.events_table):
            return 0
        statement = f"SELECT max({self.position_column}) FROM {self.events_table}"
        rows = self._fetch(self.events_engine, statement, {}, "reading the event log")
        return int(rows[0][0] or 0)

    def nth_position(self, after: int, n: int) -> int | None:
        """The position of the n-th stored event after a position (n >= 1), if there is one."""
        if not self.has_table(self.events_engine, self.events_table):
            return None
        column = self.position_column
        statement = (
            f"SELECT {column} FROM {self.events_table} WHERE {column} > {self._ph('after')} "
            f"ORDER BY {column} LIMIT 1 OFFSET {self._ph('skip')}"
        )
        params = {"after": after, "skip": n - 1}
        rows = self._fetch(self.events_engine, statement, params, "reading the event log")
        return int(rows[0][0]) if rows else None

    def count_events(self, after: int, until: int) -> int:
        """How many stored events lie after `after`, up to and including `until`."""
        if not self.has_table(self.events_engine, self.events_table):
            return 0
        column = self.position_column
        statement = (
            f"SELECT count(*) FROM {self.events_table} "
            f"WHERE {column} > {self._ph('after')} AND {column} <= {self._ph('until')}"
        )
        params = {"after": after, "until": until}
        rows = self._fetch(self.events_engine, statement, params, "counting the event log")
        return int(rows[0][0])

    def chain_entries(self, after: int = 0, batch: int = 10_000) -> Iterator[list[ChainEntry]]:
        if not self.has_table(self.events_engine, chain.name):
            return
        statement = (
            f"SELECT position, prev_position, chain_hash FROM chain "
            f"WHERE position > {self._ph('after')} ORDER BY position LIMIT {self._ph('limit')}"
        )
        while True:
            params = {"after": after, "limit": batch}
            rows = self._fetch(self.events_engine, statement, params, "reading the chain")
            if not rows:
                return
            yield [ChainEntry(*row) for row in rows]
            after = rows[-1][0]

    def _ph(self, name: str) -> str:
        postgres = self.events_engine.dialect.name == "postgresql"
        return f"%({name})s" if postgres else f":{name}"

    def _fetch(self, engine: Engine, statement: str, params: Any, what: str) -> list[Any]:
        """Rows straight from the driver: the verifier's hot path skips Core's row objects."""
        with self._guard(what), engine.connect() as conn:
            cursor = conn.connection.cursor()
            try:
                cursor.execute(statement, params)
                return list(cursor.fetchall())
            finally:
                cursor.close()

    def chain_entry_at(self, position: int) -> ChainEntry | None:
        found = next(iter(self.chain_entries(position - 1, 1)), [])
        return found[0] if found and found[0].position == position else None

    def sealed_head(self) -> Head:
        if not self.has_table(self.events_engine, chain.name):
            return Head(0, GENESIS.hex())
        with self._guard("reading the chain head"), self.events_engine.connect() as conn:
            return _head(conn)

    def payload_rows(self, digests: Sequence[str]) -> dict[str, tuple[bytes | None, Removal]]:
        """digest -> (bytes or None, removal) for the digests that have a row."""
        found: dict[str, tuple[bytes | None, Removal]] = {}
        if not digests or not self.has_table(self.payloads_engine, payloads.name):
            return found
        for digest, data, purged_at in self._by_digest(
            "SELECT hash, data, purged_at FROM payloads", digests, "reading payloads"
        ):
            found[digest] = (None if data is None else bytes(data), purged_at is not None)
        gone = [digest for digest, (data, _) in found.items() if data is None]
        if gone and self.has_table(self.payloads_engine, payload_erasures.name):
            found.update((digest, (None, why)) for digest, why in self._erasures(gone).items())
        return found

    def _erasures(self, digests: Sequence[str]) -> dict[str, Erased]:
        """digest -> why its bytes were erased, for the digests erased (one cheap query when
        nothing was ever erased)."""
        count = "SELECT count(*) FROM payload_erasures"
        if not self._fetch(self.payloads_engine, count, {}, "reading erasures")[0][0]:
            return {}
        found: dict[str, Erased] = {}
        for digest, when, reason, erasure_id in self._by_digest(
            "SELECT hash, erased_at, reason, erasure_id FROM payload_erasures",
            digests,
            "reading erasures",
        ):
            text = when.isoformat() if isinstance(when, datetime) else str(when)
            found[digest] = Erased(text, str(reason), str(erasure_id))
        return found

    def _by_digest(self, query: str, digests: Sequence[str], what: str) -> Iterator[Any]:
        """The rows of `query WHERE hash` in the digests, _PAYLOAD_CHUNK digests a query."""
        postgres = self.payloads_engine.dialect.name == "postgresql"
        for start in range(0, len(digests), _PAYLOAD_CHUNK):
            chunk = list(digests[start : start + _PAYLOAD_CHUNK])
            params: Sequence[object] = [chunk] if postgres else chunk
            where = "= ANY(%s)" if postgres else f"IN ({','.join('?' * len(chunk))})"
            yield from self._fetch(
                self.payloads_engine, f"{query} WHERE hash {where}", params, what
            )

    # sealing

    def seal(self, batch: int = 5_000) -> Head:
        """Extend the chain over every event committed so far; returns the sealed head."""
        if not all(self.has_table(self.events_engine, table.name) for table in CHAIN_TABLES):
            with self._guard("creating the chain table"):
                metadata.create_all(self.events_engine, tables=list(CHAIN_TABLES))
        horizon = self._safe_horizon()
        with no_cyclic_gc():
            return self._seal_up_to(horizon, batch)

    def _seal_up_to(self, horizon: int, batch: int) -> Head:
        conflicts = 0  # batches sealed are progress; only conflicts are bounded
        while conflicts < 100:
            try:
                head = self._seal_batch(horizon, batch)
            except DBAPIError as error:
                if not _is_conflict(error):
                    raise StoreError(
                        f"sealing the store at {shown(self.url)}: {first_line(error.orig or error)}"
                    ) from None
                conflicts += 1
                continue
            if head is not None:
                return head
        raise StoreError(
            f"sealing the store at {shown(self.url)}: kept conflicting with other sealers"
        )

    def _safe_horizon(self) -> int:
        column, table = self.position_column, self.events_table
        with self._guard("finding the sealing horizon"), self.events_engine.begin() as conn:
            if not inspect(conn).has_table(table):
                return 0
            if self.events_engine.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL lock_timeout = '60s'"))
                conn.execute(text(f"LOCK TABLE {table} IN SHARE MODE"))
            return int(conn.execute(text(f"SELECT max({column}) FROM {table}")).scalar() or 0)

    def _seal_batch(self, horizon: int, batch: int) -> Head | None:
        """Seal up to `batch` events; the head when all up to the horizon are sealed. The
        Merkle tree grows in the same transaction (first over a chain sealed without it)."""
        with self.events_engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL lock_timeout = '60s'"))
                conn.execute(text("LOCK TABLE chain IN EXCLUSIVE MODE"))
            head = _head(conn)
            tree = head_under(conn, head.position)
            behind = tree.last_position < head.position
            column = self.position_column
            rows = conn.execute(
                text(
                    f"SELECT {column}, topic, originator_id, originator_version, state "
                    f"FROM {self.events_table} WHERE {column} > :after AND {column} <= :until "
                    + (f"AND {column} IN (SELECT position FROM chain) " if behind else "")
                    + f"ORDER BY {column} LIMIT :limit"
                ),
                {
                    "after": tree.last_position if behind else head.position,
                    "until": head.position if behind else horizon,
                    "limit": batch,
                },
            ).all()
            if not rows:
                return head
            now = bound(conn, chain.c.sealed_at, datetime.now(UTC))
            prev, prev_position = bytes.fromhex(head.chain_hash), head.position
            entries: list[tuple[object, ...]] = []
            positions, leaves = [], []
            for position, topic, originator, version, state in rows:
                link, leaf = chain_and_leaf_hash(
                    prev,
                    position,
                    topic,
                    originator if type(originator) is str else originator_text(originator),
                    version,
                    state if type(state) is bytes else as_bytes(state),
                )
                positions.append(position)
                leaves.append(leaf)
                if behind:
                    continue
                prev = link
                entries.append((position, prev_position, link.hex(), now))
                prev_position = position
            insert_rows(conn, chain, CHAIN_COLUMNS, entries)
            extend(conn, tree, positions, leaves)
        return None


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """For loops making many short-lived tuples and no cycles: collections only cost."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def as_bytes(value: object) -> bytes:
    """Stored state as bytes, whatever type a hand edit left in the column."""
    if isinstance(value, bytes):
        return value
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return bytes(value)  # type: ignore[call-overload,no-any-return]


def _head(conn: Connection) -> Head:
    row = conn.execute(
        select(chain.c.position, chain.c.chain_hash).order_by(chain.c.position.desc()).limit(1)
    ).first()
    return Head(0, GENESIS.hex()) if row is None else Head(row[0], row[1])


def _is_conflict(error: DBAPIError) -> bool:
    message = str(error.orig).lower()
    return any(word in message for word in ("locked", "busy", "unique", "duplicate", "serializ"))


LogSource = RawLog
"""The former name of RawLog, kept for importers (bench/chain.py, the CLI)."""
