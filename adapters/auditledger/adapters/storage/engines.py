"""SQLAlchemy engine factory. Engines are built here, on demand, never at import time.

PostgreSQL sessions run in UTC. SQLite connections run with WAL, synchronous=FULL (a
commit survives power loss), foreign keys enforced and a generous busy timeout, so several
processes can share a directory.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool


def build_engine(url: str, **kwargs: Any) -> Engine:
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
