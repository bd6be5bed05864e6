"""An auditor's read-only view of a SQLite store: verify and explain, leaving every file as it was.

Invariants kept here:
- nothing is written to, or created in, the store's directory: the log and payloads are read
  through a read-only raw log (SQLite read-only URIs, query_only), never through the
  eventsourcing recorder (which creates tables and sets the journal mode on open);
- the landscape is a copy in memory: the landscape file's rows when there is one (read
  through a read-only URI), else none; verify's shadows, probes and rollbacks, and explain's
  catch-up, happen in that copy only, so it costs memory about the landscape file's size;
- verify checks the copy as it stands; the caller catches it up first when there was no
  landscape file (`had_landscape`) or when asked to.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import StaticPool

from auditledger.adapters.storage.engines import read_only_uri
from auditledger.adapters.storage.event_store import LedgerApplication
from auditledger.adapters.storage.payloads import SqlPayloadStore
from auditledger.domain.errors import StoreError, UndecodableEvent
from auditledger.projections import queries, schema
from auditledger.projections.runner import Projector
from auditledger.projections.verify import VerifyReport, verify


class RawRow(Protocol):
    """One stored event as the raw log reads it (tamper.raw_log.RawEvent satisfies it)."""

    @property
    def position(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def originator(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def state(self) -> bytes: ...


class RawRows(Protocol):
    """The raw log a read-only view reads (tamper.raw_log.RawLog opened read-only)."""

    @property
    def payloads_engine(self) -> Engine: ...

    def events(
        self, after: int = 0, until: int | None = None, batch: int = 10_000
    ) -> Iterator[Sequence[RawRow]]: ...

    def last_position(self) -> int: ...


class RawLogReader:
    """EventSource over raw stored rows, decoded by the ledger's own mapper."""

    def __init__(self, log: RawRows, mapper: Mapper[UUID]) -> None:
        self.log = log
        self.mapper = mapper

    def read(self, after: int, limit: int, stop: int | None = None) -> Sequence[tuple[int, Any]]:
        rows = next(iter(self.log.events(after, stop, batch=limit)), [])
        return [(row.position, self._decoded(row)) for row in rows]

    def _decoded(self, row: RawRow) -> Any:
        try:
            stored = StoredEvent(
                originator_id=UUID(row.originator),
                originator_version=row.version,
                topic=row.topic,
                state=row.state,
            )
            return self.mapper.to_domain_event(stored)
        except Exception as error:
            raise UndecodableEvent(
                row.position, row.topic, f"{type(error).__name__}: {error}"
            ) from None

    def last_position(self) -> int:
        return self.log.last_position()


class ReadOnlyLandscape:
    """verify and explain over a raw log opened read-only and a landscape copied into memory."""

    def __init__(self, log: RawRows, landscape_file: Path | None) -> None:
        self.app = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.source = RawLogReader(log, self.app.mapper)
        self.payloads = SqlPayloadStore(log.payloads_engine)
        self.had_landscape = landscape_file is not None and landscape_file.is_file()
        self.engine = memory_copy(landscape_file if self.had_landscape else None)
        schema.ensure(self.engine, "the in-memory copy of the landscape")

    def close(self) -> None:
        self.engine.dispose()
        self.app.close()

    def __enter__(self) -> ReadOnlyLandscape:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def catch_up(self) -> int:
        """Bring the in-memory copy up to the log; returns how many events were applied."""
        return Projector(self.engine, self.source).catch_up()

    def verify(self, *, diff: bool = True) -> VerifyReport:
        """The landscape copy's invariants as it stands (catch_up() first to bring it up)."""
        return verify(self.engine, self.source, self.payloads, diff=diff)

    def explain(
        self,
        *,
        state_id: str | None = None,
        token_id: str | None = None,
        run_id: str | None = None,
    ) -> queries.Explanation:
        self.catch_up()
        with self.engine.connect() as conn:
            return queries.explain(
                conn, self.payloads.statuses, state_id=state_id, token_id=token_id, run_id=run_id
            )


def memory_copy(landscape_file: Path | None) -> Engine:
    """An in-memory SQLite database holding the file's rows (read through a read-only URI)."""
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    if landscape_file is not None:
        try:
            with closing(sqlite3.connect(read_only_uri(landscape_file), uri=True)) as source:
                source.backup(memory)
        except sqlite3.Error as error:
            memory.close()
            raise StoreError(f"reading the landscape at {landscape_file}: {error}") from None
    memory.execute("PRAGMA foreign_keys=ON")
    return create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)
