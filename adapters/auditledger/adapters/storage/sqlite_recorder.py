"""The SQLite event recorder, with the payloads of a commit in the same transaction.

A SQLite store keeps its payload table in the events' own file (events.sqlite3), so one
write is one transaction and one fsync: the payload rows, then the event rows. (An older
directory, docs/architecture.md "Storage layout", gets `SeparatePayloadsSQLiteRecorder`.)

Cut from the library's path: it inserts the events one statement at a time to collect
their rowids; here one executemany, and the rowids are read back from the last one (the
write lock is held, so the rows of one write take consecutive rowids); a single event (most
writes) is one execute whose cursor has its rowid.

A write goes only to the log file that was opened: its (device, inode) is pinned at open and
looked at before each write transaction (one stat), so a log deleted or replaced under an
open ledger refuses writes with LogReplaced instead of writing into a file nobody will see.

An aggregate's events are read with one SELECT on a pooled connection (SQLite runs a lone
statement as its own read transaction): no BEGIN and ROLLBACK around it as the library has;
its errors are translated to the library's exceptions the same way.

Read and log guards (guards.py) are checked after the inserts: the write lock is held by then, so no
other writer can record anything between the check and the commit.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.storage.guards import Guard, LogGuard, ReadGuard
from auditledger.adapters.storage.payloads import SQLITE_UPSERT, sqlite_payload_rows
from auditledger.adapters.storage.sqlite_errors import translated
from auditledger.domain.errors import LogReplaced


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    holds_payloads = True  # the payload table lives in this file
    log_file: str | None = None
    pinned: tuple[int, int] | None = None

    def create_table(self) -> None:
        """Create the tables (the application does, when it is built), then pin the file."""
        super().create_table()
        pool = self.datastore.pool
        if not pool.is_sqlite_memory_mode:
            self.log_file, self.pinned = pool.db_name, _identity(pool.db_name)

    def check_log_file(self) -> None:
        if self.log_file is not None and _identity(self.log_file) != self.pinned:
            raise LogReplaced(self.log_file)

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        statement = self.select_events_statement
        params: list[Any] = [
            originator_id.hex if isinstance(originator_id, UUID) else originator_id
        ]
        if gt is not None:
            statement += "AND originator_version>? "
            params.append(gt)
        if lte is not None:
            statement += "AND originator_version<=? "
            params.append(lte)
        statement += f"ORDER BY originator_version {'DESC' if desc else 'ASC'} "
        if limit is not None:
            statement += "LIMIT ? "
            params.append(limit)
        with self.datastore.get_connection(commit=False) as connection:
            cursor = connection.cursor().sqlite_cursor
            try:
                cursor.execute(statement, params)
                rows = cursor.fetchall()
            except sqlite3.Error as error:
                raise translated(error) from error
            finally:
                cursor.close()
        return [
            StoredEvent(
                originator_id=self.convert_originator_id(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=row["state"],
            )
            for row in rows
        ]

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        payloads: Sequence[Payload] = (),
        guards: Sequence[Guard] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        if payloads and not self.holds_payloads:
            raise ValueError("this store keeps its payloads in another file")
        self.check_log_file()
        with self.datastore.transaction(commit=True) as c:
            if payloads:
                c.executemany(SQLITE_UPSERT, sqlite_payload_rows(payloads))
            ids = self._insert_events(c, stored_events, **kwargs)
            for guard in guards:
                if isinstance(guard, LogGuard):
                    self._check_log(c, guard)
                else:
                    self._check(c, guard)
            return ids

    def _check_log(self, c: SQLiteCursor, guard: LogGuard) -> None:
        topics = guard.opening_topics
        c.execute(
            f"SELECT 1 FROM {self.events_table_name} WHERE rowid > ? "
            f"AND topic IN ({','.join('?' * len(topics))}) AND instr(state, ?) > 0 LIMIT 1",
            (guard.after, *topics, guard.needle),
        )
        if c.fetchone() is not None:
            raise IntegrityError(guard.refusal())

    def _check(self, c: SQLiteCursor, guard: ReadGuard) -> None:
        topics = guard.closing_topics
        c.execute(
            f"SELECT 1 FROM {self.events_table_name} WHERE originator_id = ? "
            f"AND originator_version > ? AND topic IN ({','.join('?' * len(topics))}) LIMIT 1",
            (guard.aggregate_id.hex, guard.version, *topics),
        )
        if c.fetchone() is not None:
            raise IntegrityError(guard.refusal())

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        rows = [
            (
                e.originator_id.hex if isinstance(e.originator_id, UUID) else e.originator_id,
                e.originator_version,
                e.topic,
                e.state,
            )
            for e in stored_events
        ]
        if len(rows) == 1:  # most writes: the cursor knows its row id, no second statement
            c.execute(self.insert_events_statement, rows[0])
            return [int(c.lastrowid)]
        c.executemany(self.insert_events_statement, rows)
        c.execute("SELECT last_insert_rowid()")
        last = int(c.fetchone()[0])
        return list(range(last - len(stored_events) + 1, last + 1))


class SeparatePayloadsSQLiteRecorder(LedgerSQLiteRecorder):
    """A directory of the earlier layout (docs/architecture.md, "Storage layout")."""

    holds_payloads = False


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)
