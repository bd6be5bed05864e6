"""LandscapeService, the Ledger's read side: catch_up, follow, rebuild, verify, explain, export.

The projections read the log through `LogReader`, the adapters' side of the narrow
EventSource port (eventsourcing's notification log, mapped to domain events). Database
errors of the landscape become one StoreError naming the URL. Reads (explain, export)
catch up first, so they see everything recorded before them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from auditledger.adapters.storage.errors import store_errors
from auditledger.adapters.storage.event_store import LedgerApplication
from auditledger.adapters.storage.payloads import PayloadStore
from auditledger.adapters.storage.stores import Stores
from auditledger.domain.errors import InvalidArgument, UndecodableEvent
from auditledger.projections import queries, schema
from auditledger.projections.rebuild import RebuildResult, rebuild
from auditledger.projections.runner import Progress, Projector
from auditledger.projections.skips import Skip
from auditledger.projections.stuck import skip_event
from auditledger.projections.verify import VerifyReport, verify


class LogReader:
    """EventSource over the eventsourcing application's notification log."""

    def __init__(self, app: LedgerApplication) -> None:
        self.recorder = app.recorder
        self.mapper = app.mapper

    def read(self, after: int, limit: int, stop: int | None = None) -> Sequence[tuple[int, Any]]:
        notes = self.recorder.select_notifications(start=after + 1, limit=limit, stop=stop)
        try:
            return [(n.id, self.mapper.to_domain_event(n)) for n in notes]
        except Exception:
            return [(n.id, self._decoded(n)) for n in notes]

    def _decoded(self, note: Any) -> Any:
        try:
            return self.mapper.to_domain_event(note)
        except Exception as error:
            raise UndecodableEvent(
                note.id, note.topic, f"{type(error).__name__}: {error}"
            ) from None

    def last_position(self) -> int:
        return int(self.recorder.max_notification_id() or 0)


@dataclass
class _Landscape:
    engine: Engine
    lock: threading.RLock
    source: LogReader


def parse_until(value: str | int | datetime | None) -> int | datetime | None:
    """A position (whole number) or an ISO timestamp (naive means UTC)."""
    if value is None or isinstance(value, (int, datetime)):
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            "until", value, "a log position (a whole number) or an ISO 8601 timestamp"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class LandscapeService:
    """Built by the Ledger; the landscape (engine, schema, lock) is made on first use."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self.app: LedgerApplication = stores.application
        self.payloads: PayloadStore = stores.payloads
        self.source = LogReader(stores.application)
        self._handle: _Landscape | None = None
        self._creating = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The landscape's SQLAlchemy Engine (its tables created if missing), for reading
        with SQL; it shows what catch-up has applied so far."""
        return self._landscape().engine

    def log_position(self) -> int:
        """The position of the last event in the log (0 when it is empty)."""
        return self.source.last_position()

    def catch_up(self, chunk_size: int = 1000, *, progress: Progress | None = None) -> int:
        """Apply every event recorded so far to the landscape; returns how many."""
        land = self._landscape()
        with land.lock, self._landscape_errors():
            return self._projector(land).catch_up(chunk_size, progress=progress)

    def landscape_position(self) -> int:
        land = self._landscape()
        with land.lock, self._landscape_errors():
            return self._projector(land).position()

    def follow(
        self,
        should_stop: Callable[[], bool],
        *,
        poll_seconds: float = 1.0,
        chunk_size: int = 1000,
        progress: Progress | None = None,
    ) -> int:
        """Keep the landscape current until should_stop(); PostgreSQL wakes on NOTIFY."""
        land = self._landscape()
        with self._wake_up() as wait, self._landscape_errors():
            applied = 0
            while not should_stop():
                with land.lock:
                    count = self._projector(land).catch_up(chunk_size, progress=progress)
                applied += count
                if count == 0:
                    wait(poll_seconds)
            return applied

    def rebuild(
        self,
        until: str | int | datetime | None = None,
        *,
        chunk_size: int = 2000,
        progress: Progress | None = None,
    ) -> RebuildResult:
        """Rebuild the landscape from position 0 (up to `until`) and swap it in atomically."""
        bound = parse_until(until)
        land = self._landscape()
        with land.lock, self._landscape_errors():
            return rebuild(
                land.engine,
                land.source,
                stop=bound if isinstance(bound, int) else None,
                until_time=bound if isinstance(bound, datetime) else None,
                chunk_size=chunk_size,
                progress=progress,
            )

    def verify(self, *, diff: bool = True) -> VerifyReport:
        """Check the landscape's invariants as it stands (read-only: no catch-up)."""
        land = self._landscape()
        with land.lock, self._landscape_errors():
            return verify(land.engine, land.source, self.payloads, diff=diff)

    def skip_event(self, position: int, *, reason: str) -> Skip:
        land = self._landscape()
        with land.lock, self._landscape_errors():
            return skip_event(land.engine, land.source, position, reason)

    def explain(
        self,
        *,
        state_id: str | None = None,
        token_id: str | None = None,
        run_id: str | None = None,
    ) -> queries.Explanation:
        self.catch_up()
        land = self._landscape()
        with land.lock, self._landscape_errors(), land.engine.connect() as conn:
            return queries.explain(
                conn,
                self.payloads.statuses,
                state_id=None if state_id is None else str(state_id),
                token_id=token_id,
                run_id=None if run_id is None else str(run_id),
            )

    def unsettled(self, run_id: str) -> tuple[int, tuple[str, ...]]:
        """After catching up: how many of a run's states, operations and batches are not
        settled, and up to five of their ids (complete_run's check)."""
        self.catch_up()
        land = self._landscape()
        with land.lock, self._landscape_errors(), land.engine.connect() as conn:
            return queries.unsettled(conn, str(run_id))

    def unsettled_at(self, run_id: str) -> tuple[int, int, tuple[str, ...]]:
        """After catching up: the landscape's position and, as of it, `unsettled`'s count
        and ids (complete_run guards its write with "nothing opened for the run since")."""
        self.catch_up()
        land = self._landscape()
        with land.lock, self._landscape_errors(), land.engine.connect() as conn:
            return queries.unsettled_at(conn, str(run_id))

    def export_rows(self, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every landscape row of a run as (table, row), after catching up."""
        self.catch_up()
        land = self._landscape()
        with land.lock, self._landscape_errors(), land.engine.connect() as conn:
            yield from queries.run_rows(conn, str(run_id))

    # Internals

    def _projector(self, land: _Landscape) -> Projector:
        return Projector(land.engine, land.source)

    def _landscape(self) -> _Landscape:
        handle = self._handle
        if handle is not None:
            return handle
        with self._creating:
            if self._handle is None:
                url = self.stores.landscape_url
                with self._landscape_errors():
                    engine = self.stores.landscape_engine
                    schema.ensure(engine, _shown(url))
                self._handle = _Landscape(engine=engine, lock=threading.RLock(), source=self.source)
            return self._handle

    def _landscape_errors(self) -> Any:
        return store_errors("landscape", self.stores.landscape_url)

    def _wake_up(self) -> Any:
        return _wake_up(self.stores, self.app)


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


class _wake_up:
    """wait(seconds): PostgreSQL LISTENs on the event table's channel; others just sleep."""

    def __init__(self, stores: Stores, app: LedgerApplication) -> None:
        self.stores = stores
        self.channel = getattr(app.recorder, "channel_name", None)
        self.conn: Any = None

    def __enter__(self) -> Callable[[float], None]:
        if self.stores.settings.kind == "postgresql" and self.channel:
            import psycopg

            url = make_url(self.stores.settings.postgres_url()).set(drivername="postgresql")
            self.conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
            self.conn.execute(f'LISTEN "{self.channel}"')
            return self._listen
        return _sleep

    def _listen(self, seconds: float) -> None:
        for _ in self.conn.notifies(timeout=seconds, stop_after=1):
            pass

    def __exit__(self, *_: object) -> None:
        if self.conn is not None:
            self.conn.close()


def _sleep(seconds: float) -> None:
    threading.Event().wait(seconds)
