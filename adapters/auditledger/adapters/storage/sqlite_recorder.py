"""The SQLite event recorder, with the payloads of a commit in the same transaction.

A SQLite store keeps its payload table in the events' own file (events.sqlite3), so one
write is one transaction and one fsync: the payload rows, then the event rows. (A directory
made before this layout keeps its payloads.sqlite3; there the payloads are committed just
before the events, as they always were: the settings name `SeparatePayloadsSQLiteRecorder`,
whose `holds_payloads` is False.)

Cut from the library's path: it inserts the events one statement at a time to collect
their rowids; here one executemany, and the rowids are read back from the last one (the
write lock is held, so the rows of one write take consecutive rowids).

Read guards (guards.py) are checked after the inserts: the write lock is held by then, so no
other writer can record anything between the check and the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.storage.guards import ReadGuard
from auditledger.adapters.storage.payloads import SQLITE_UPSERT, sqlite_payload_rows


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    holds_payloads = True  # the payload table lives in this file

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        payloads: Sequence[Payload] = (),
        guards: Sequence[ReadGuard] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        if payloads and not self.holds_payloads:
            raise ValueError("this store keeps its payloads in another file")
        with self.datastore.transaction(commit=True) as c:
            if payloads:
                c.executemany(SQLITE_UPSERT, sqlite_payload_rows(payloads))
            ids = self._insert_events(c, stored_events, **kwargs)
            for guard in guards:
                self._check(c, guard)
            return ids

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
        c.executemany(
            self.insert_events_statement,
            [
                (
                    e.originator_id.hex if isinstance(e.originator_id, UUID) else e.originator_id,
                    e.originator_version,
                    e.topic,
                    e.state,
                )
                for e in stored_events
            ],
        )
        c.execute("SELECT last_insert_rowid()")
        last = int(c.fetchone()[0])
        return list(range(last - len(stored_events) + 1, last + 1))


class SeparatePayloadsSQLiteRecorder(LedgerSQLiteRecorder):
    """A directory of the earlier layout: its payloads are in payloads.sqlite3."""

    holds_payloads = False
