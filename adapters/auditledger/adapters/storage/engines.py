"""SQLAlchemy engine factory. Engines are built here, on demand, never at import time.

PostgreSQL sessions run in UTC. SQLite connections run with WAL, synchronous=FULL (a
commit survives power loss), foreign keys enforced and a generous busy timeout, so several
processes can share a directory.

read_only=True (an auditor's copy): a SQLite file is opened through a read-only URI
(`read_only_uri`: immutable=1 when no write-ahead log holds anything, else mode=ro) with
query_only on, so SQLite refuses any write and creates no -wal or -shm file; a PostgreSQL
session runs with default_transaction_read_only.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from auditledger.domain.errors import StoreError


def build_engine(url: str, *, read_only: bool = False, **kwargs: Any) -> Engine:
    if read_only:
        return _read_only_engine(url, **kwargs)
    if url in ("sqlite://", "sqlite:///:memory:"):
        engine = create_engine(
            "sqlite://",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            **kwargs,
        )
        _sqlite_pragmas(engine, wal=False)
        return engine
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)
        _sqlite_pragmas(engine, wal=True)
        return engine
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    # The landscape writes naive UTC timestamps into timestamptz columns: a session in the
    # server's own zone would read them as local time and shift every instant.
    kwargs.setdefault("connect_args", {"options": "-c timezone=UTC"})
    kwargs.setdefault("pool_size", 4)
    kwargs.setdefault("max_overflow", 8)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def read_only_uri(path: Path) -> str:
    """An SQLite URI that opens `path` without writing anything beside or in it."""
    wal = path.with_name(path.name + "-wal")
    has_log = wal.is_file() and wal.stat().st_size > 0
    mode = "mode=ro" if has_log else "immutable=1"  # immutable would not read the -wal
    return f"{path.resolve().as_uri()}?{mode}"


def _read_only_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite:///") and url not in ("sqlite:///:memory:",):
        uri = read_only_uri(Path(url[len("sqlite:///") :]))

        def connect() -> sqlite3.Connection:
            connection = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=60)
            connection.execute("PRAGMA query_only=ON")
            return connection

        return create_engine("sqlite://", creator=connect, **kwargs)
    if url.startswith(("postgresql", "postgres://")):
        kwargs.setdefault(
            "connect_args", {"options": "-c timezone=UTC -c default_transaction_read_only=on"}
        )
        return build_engine(url, **kwargs)
    raise StoreError(f"{url}: read-only use needs a SQLite file or PostgreSQL")


def _sqlite_pragmas(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()
