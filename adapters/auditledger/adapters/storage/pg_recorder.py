"""The PostgreSQL event recorder, with the payloads of a commit in the same transaction.

One write is one transaction: our payload rows first, then the library's EXCLUSIVE lock on
the events table, its NOTIFY and the event rows. The lock is what keeps notification ids in
commit order (a reader never passes a gap that a slower transaction fills later); taking it
after the payload insert keeps the locked part short. Payload rows go in hash order, so two
writers sharing payloads cannot deadlock on them.

Cut from the library's path: events go as columns (it sends one array of a composite type
in text, escaping every byte of every state on the client): topics and states as binary
arrays, ids and versions as one comma-joined text each (psycopg dumps a list element by
element in Python; a joined string is one parameter), and BEGIN ...
COMMIT go in the same pipeline as the inserts, so the whole write is one round trip and the
table lock is held for the server's work only, never while a client waits for the CPU to
read a reply (with more writers than cores, that wait is what stopped writers scaling).

A write heavier than PIPELINE_MAX_BYTES is not pipelined: psycopg's pipeline stops flushing
once its last command is queued, so a write bigger than the socket buffers can hold stays
half-sent while the client waits for replies and the server (holding the table lock) waits
for the rest: both wait forever. Such a write goes statement by statement, each one sent
whole before its reply is awaited.

Every connection runs with the store's lock timeout (lock_timeout=SECONDS in the URL): a
write or read that waits longer for a lock fails with LockTimeout, once, not once per retry
of the library's loop (which retries its operational errors ten times).

Read guards (guards.py) are checked after the inserts, under the table lock (so every
earlier writer has committed and no later one can), in the same pipeline: a guard that
fails tries to insert the read aggregate's next version, which exists, so the unique
(originator_id, originator_version) refuses the whole transaction with the IntegrityError
a version conflict gets, and the write stays one round trip. A log guard that fails (an
event of its topics naming its aggregate after its position) inserts an event of that
aggregate that exists (its guard names one) to the same effect.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Connection, Cursor
from psycopg.errors import LockNotAvailable
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.storage.guards import Guard, LogGuard
from auditledger.domain.errors import LockTimeout
from auditledger.projections.schema import SCHEMA_LOCK

PIPELINE_MAX_BYTES = 64 * 1024
"""States and payload bytes a pipelined write may carry: well within the kernel's socket
buffers (a loopback TCP or Unix socket holds more than twice this unread)."""

# Hashes (hex) go as one comma-joined text and sizes are computed by the server: psycopg
# dumps a list parameter element by element in Python, which costs far more than one text.
INSERT_PAYLOADS = SQL(
    "INSERT INTO payloads (hash, data, size, created_at) "
    "SELECT h, d, octet_length(d), now() "
    "FROM unnest(string_to_array(%s, ','), %b::bytea[]) AS u(h, d) "
    "ON CONFLICT (hash) DO UPDATE SET data = EXCLUDED.data, purged_at = NULL "
    "WHERE payloads.data IS NULL"
)


def _timed_out(recorder: PostgresApplicationRecorder, what: str) -> LockTimeout:
    return LockTimeout(what, recorder.datastore.lock_timeout)


def _lock_timeout_is_final(method: Callable[..., Any], what: str) -> Callable[..., Any]:
    """The library's read, retried as the library does, except past a lock timeout."""
    once = inspect.unwrap(method)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    @wraps(once)
    def guarded(self: PostgresApplicationRecorder, *args: Any, **kwargs: Any) -> Any:
        try:
            return once(self, *args, **kwargs)
        except OperationalError as error:
            if isinstance(error.__cause__, LockNotAvailable):
                raise _timed_out(self, what) from None
            raise

    guarded_method: Callable[..., Any] = guarded
    return guarded_method


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    @property
    def holds_payloads(self) -> bool:
        """Whether insert_events takes a write's payloads into its own transaction (not on
        the library's DB-function insert path, which this recorder leaves as it is)."""
        return not self.datastore.enable_db_functions

    def create_table(self) -> None:
        """The library's schema creation, one process at a time: it replaces its insert
        function on every start, and two at once fail with 'tuple concurrently updated'."""
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
            try:
                super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        connect_kwargs = datastore.pool.kwargs  # before the library's first connection
        if datastore.lock_timeout and isinstance(connect_kwargs, dict):
            connect_kwargs["options"] = f"-c lock_timeout={datastore.lock_timeout}s"
        super().__init__(datastore, **kwargs)
        self._insert_binary = self._on_events_table(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(string_to_array(%s, ',')::uuid[], "
            "string_to_array(%s, ',')::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        )
        self._check_guard = self._on_events_table(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT %s::uuid, %s::bigint + 1, '', ''::bytea WHERE EXISTS (SELECT 1 "
            "FROM {schema}.{table} WHERE originator_id = %s::uuid "
            "AND originator_version > %s::bigint AND topic = ANY(%s::text[]))"
        )
        self._check_log_guard = self._on_events_table(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT %s::uuid, %s::bigint, '', ''::bytea WHERE EXISTS (SELECT 1 "
            "FROM {schema}.{table} WHERE notification_id > %s::bigint "
            "AND topic = ANY(%s::text[]) AND position(%s::bytea in state) > 0)"
        )

    def _on_events_table(self, statement: str) -> Composed:
        """A statement naming the events table as {schema}.{table}, quoted once here."""
        return SQL(statement).format(
            schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name)
        )

    select_events = _lock_timeout_is_final(
        PostgresApplicationRecorder.select_events, "reading the event log"
    )
    select_notifications = _lock_timeout_is_final(
        PostgresApplicationRecorder.select_notifications, "reading the event log"
    )
    max_notification_id = _lock_timeout_is_final(
        PostgresApplicationRecorder.max_notification_id, "reading the event log"
    )

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        guards: Sequence[Guard] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        if self.datastore.enable_db_functions or not stored_events:
            if guards:
                raise ValueError("read guards need this recorder's own insert path")
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        with self.datastore.get_connection() as conn:
            assert conn.autocommit
            try:
                if _weight(stored_events, **kwargs) > PIPELINE_MAX_BYTES:
                    return self._write_in_steps(conn, stored_events, guards, **kwargs)
                return self._write_pipelined(conn, stored_events, guards, **kwargs)
            except LockNotAvailable:
                raise _timed_out(self, f"writing to {self.events_table_name}") from None

    def _write_pipelined(
        self,
        conn: Connection[DictRow],
        stored_events: Sequence[StoredEvent],
        guards: Sequence[Guard],
        **kwargs: Any,
    ) -> Sequence[int] | None:
        failure: BaseException | None = None
        with conn.pipeline() as pipeline, conn.cursor() as control, conn.cursor() as insert:
            try:
                control.execute("BEGIN")
                self._insert_events(control, stored_events, **kwargs)
                self._insert_stored_events(insert, stored_events, **kwargs)
                self._check_guards(control, guards)
                control.execute("COMMIT")
                pipeline.sync()
                ids = self._fetch_ids_after_insert_events(insert, stored_events)
            except BaseException as error:  # re-raised once the pipeline is closed
                failure = error
        if failure is not None:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise failure
        return ids

    def _write_in_steps(
        self,
        conn: Connection[DictRow],
        stored_events: Sequence[StoredEvent],
        guards: Sequence[Guard],
        **kwargs: Any,
    ) -> Sequence[int] | None:
        with conn.transaction(), conn.cursor() as curs:
            self._insert_events(curs, stored_events, **kwargs)
            self._insert_stored_events(curs, stored_events, **kwargs)
            ids = self._fetch_ids_after_insert_events(curs, stored_events)
            self._check_guards(curs, guards)
            return ids

    def _check_guards(self, curs: Cursor[DictRow], guards: Sequence[Guard]) -> None:
        """Under the table lock: a guard whose aggregate has closed since it was read inserts
        that aggregate's next version, which exists, so the whole transaction is refused."""
        for guard in guards:
            if isinstance(guard, LogGuard):
                curs.execute(
                    self._check_log_guard,
                    (
                        guard.aggregate_id,
                        guard.version,
                        guard.after,
                        list(guard.opening_topics),
                        guard.needle,
                    ),
                    prepare=True,
                )
                continue
            curs.execute(
                self._check_guard,
                (
                    guard.aggregate_id,
                    guard.version,
                    guard.aggregate_id,
                    guard.version,
                    list(guard.closing_topics),
                ),
                prepare=True,
            )

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self._insert_binary,
            (
                ",".join([str(e.originator_id) for e in stored_events]),
                ",".join([str(e.originator_version) for e in stored_events]),
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
            (",".join([digest for digest, _ in unique]), [p.data for _, p in unique]),
            prepare=True,
        )


def _weight(
    stored_events: Sequence[StoredEvent], *, payloads: Sequence[Payload] = (), **_: Any
) -> int:
    return sum(len(e.state) for e in stored_events) + sum(len(p.data) for p in payloads)
