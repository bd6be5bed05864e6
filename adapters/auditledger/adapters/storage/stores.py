"""Stores: the event log, the payload store and the landscape engine behind one store URL."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from auditledger.adapters.storage.engines import build_engine
from auditledger.adapters.storage.event_store import LedgerApplication
from auditledger.adapters.storage.payloads import MemoryPayloadStore, PayloadStore, SqlPayloadStore
from auditledger.adapters.storage.settings import StoreSettings
from auditledger.adapters.storage.tables import PAYLOAD_TABLES, metadata
from auditledger.domain.errors import LogMissing, StoreError


@dataclass
class Stores:
    settings: StoreSettings
    application: LedgerApplication
    payloads: PayloadStore
    landscape_url: str
    _landscape_engine: Engine | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, url: str, *, landscape_url: str | None = None) -> Stores:
        settings = StoreSettings.parse(url)
        if settings.directory is not None:
            try:
                settings.directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(f"store {url!r}: cannot create the directory: {error}") from None
            _refuse_history_without_log(settings)
        application = _open_application(settings)
        try:
            payloads = _open_payloads(settings)
        except BaseException:
            application.close()
            raise
        return cls(
            settings=settings,
            application=application,
            payloads=payloads,
            landscape_url=landscape_url or settings.sqlalchemy_url("landscape"),
        )

    @property
    def landscape_engine(self) -> Engine:
        with self._lock:
            if self._landscape_engine is None:
                self._landscape_engine = build_engine(self.landscape_url)
            return self._landscape_engine

    def close(self) -> None:
        self.application.close()
        self.payloads.close()
        if self._landscape_engine is not None:
            self._landscape_engine.dispose()


def _refuse_history_without_log(settings: StoreSettings) -> None:
    """A directory whose landscape has applied events has a log: never start an empty one."""
    if settings.sqlite_file("events").exists():
        return
    landscape = settings.sqlite_file("landscape")
    if not landscape.is_file():
        return
    try:
        with closing(sqlite3.connect(f"{landscape.as_uri()}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT max(position) FROM projection_positions").fetchone()
    except sqlite3.Error:
        return  # no position table (or not a database): nothing shows history
    if row is not None and (row[0] or 0) > 0:
        raise LogMissing(
            str(settings.directory), f"landscape.sqlite3 has applied events up to {row[0]}"
        )


def _open_application(settings: StoreSettings) -> LedgerApplication:
    try:
        return LedgerApplication(env=settings.event_store_env())
    except Exception as error:  # the library raises several kinds for a bad store
        raise StoreError(f"cannot open the event store at {settings.url!r}: {error}") from None


def _open_payloads(settings: StoreSettings) -> PayloadStore:
    if settings.kind == "memory":
        return MemoryPayloadStore()
    engine = build_engine(settings.sqlalchemy_url("payloads"))
    try:
        metadata.create_all(engine, tables=list(PAYLOAD_TABLES))
    except SQLAlchemyError as error:
        engine.dispose()
        raise StoreError(f"cannot open the payload store at {settings.url!r}: {error}") from None
    return _EngineOwningPayloadStore(engine)


class _EngineOwningPayloadStore(SqlPayloadStore):
    def close(self) -> None:
        self.engine.dispose()
