"""The PostgreSQL event recorder, with the payloads of a commit in the same transaction.

eventsourcing's recorder runs one pipelined transaction per insert: our payload rows first,
then its EXCLUSIVE lock on the events table, the NOTIFY and the event rows. The lock is
what keeps notification ids in commit order (a reader never passes a gap that a slower
transaction fills later); taking it after the payload insert keeps the locked part short.
Payload rows go in hash order, so two writers sharing payloads cannot deadlock on them.
Events go as four binary arrays (the library sends one array of a composite type in text,
escaping every byte of every event's state on the client: most of a commit's client time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from .canonical import Payload

INSERT_PAYLOADS = SQL(
    "INSERT INTO payloads (hash, data, size, created_at) "
    "SELECT h, d, s, now() FROM unnest(%s::varchar[], %b::bytea[], %s::bigint[]) AS u(h, d, s) "
    "ON CONFLICT (hash) DO UPDATE SET data = EXCLUDED.data, purged_at = NULL "
    "WHERE payloads.data IS NULL"
)


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._insert_binary = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self._insert_binary,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        *,
        payloads: Sequence[Payload] = (),
        **kwargs: Any,
    ) -> None:
        if not payloads:
            return
        unique = sorted({p.digest: p for p in payloads}.items())
        curs.execute(
            INSERT_PAYLOADS,
            (
                [digest for digest, _ in unique],
                [p.data for _, p in unique],
                [len(p.data) for _, p in unique],
            ),
            prepare=True,
        )
