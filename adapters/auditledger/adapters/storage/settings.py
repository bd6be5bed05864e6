"""Store URLs -> where events, payloads and the landscape live.

- ``memory://``: in-process only (tests, demos).
- ``sqlite:///PATH`` (``sqlite:////abs/path``): a directory, created if missing, holding
  ``events.sqlite3`` (the event log and the payload table, so a write is one transaction)
  and ``landscape.sqlite3`` (older directories: docs/architecture.md, "Storage layout").
- ``postgresql://user[:password]@host[:port]/db``: one database holds all three.

Read-only use (an auditor's copy): `verify`, `verify-chain` and `explain` take --read-only,
and use it by themselves when the directory cannot be written (`on_read_only_media`); the
files are then opened with SQLite's read-only URIs (engines.read_only_uri).

Options go in the query: ``?lock_timeout=SECONDS`` (a whole number >= 1, default 60) is how
long a write or read waits for a lock another connection holds (the events table on
PostgreSQL, the file on SQLite) before it fails with StoreError (LockTimeout on PostgreSQL).
``?retention_days=DAYS`` (a whole number >= 0, default 183: the six months EU AI Act Art. 19
asks high-risk systems to keep their logs) is the store's minimum retention: `purge` and
`erase` refuse records younger than that unless overridden (recorded). Both options may be
given, joined by ``&``; ``memory://?retention_days=0`` works too.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from auditledger.domain.errors import StoreError

Kind = Literal["memory", "sqlite", "postgresql"]
OPTIONS = ("lock_timeout", "retention_days")
DEFAULT_LOCK_TIMEOUT = 60
DEFAULT_RETENTION_DAYS = 183


@dataclass(frozen=True)
class StoreSettings:
    url: str
    kind: Kind
    directory: Path | None = None
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT
    retention_days: int = DEFAULT_RETENTION_DAYS

    @classmethod
    def parse(cls, url: str) -> StoreSettings:
        if not isinstance(url, str) or "://" not in url:
            raise StoreError(
                f"store URL {url!r} is not one of memory://, sqlite:///DIRECTORY, "
                "postgresql://user@host:port/db"
            )
        scheme, rest = url.split("://", 1)
        if scheme == "memory":
            query = rest.partition("?")[2]
            return cls(url=url, kind="memory", retention_days=_retention_days(url, query))
        if scheme in ("sqlite", "sqlite+pysqlite"):
            rest, _, query = rest.partition("?")
            if not rest.startswith("/") or rest == "/":
                raise StoreError(f"store URL {url!r}: sqlite:///PATH names a directory")
            return cls(
                url=url,
                kind="sqlite",
                directory=Path(unquote(rest[1:])),
                lock_timeout=_lock_timeout(url, query),
                retention_days=_retention_days(url, query),
            )
        if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            parts = urlsplit(url)
            dbname = parts.path.lstrip("/")
            if not dbname:
                raise StoreError(f"store URL {url!r}: name the database, .../DBNAME")
            try:
                port = parts.port or 5432
            except ValueError:
                raise StoreError(f"store URL {url!r}: the port is not a number") from None
            return cls(
                url=url,
                kind="postgresql",
                host=parts.hostname or "127.0.0.1",
                port=port,
                user=unquote(parts.username or "postgres"),
                password=unquote(parts.password or ""),
                dbname=unquote(dbname),
                lock_timeout=_lock_timeout(url, parts.query),
                retention_days=_retention_days(url, parts.query),
            )
        raise StoreError(
            f"store URL {url!r}: unknown scheme {scheme!r} "
            "(memory://, sqlite:///DIRECTORY, postgresql://user@host:port/db)"
        )

    def event_store_env(self) -> dict[str, str]:
        if self.kind == "memory":
            # the library's in-memory recorder, with read guards checked under its lock
            return {
                "PERSISTENCE_MODULE": "auditledger.adapters.storage.popo_recorder:LedgerPOPOFactory"
            }
        if self.kind == "sqlite":
            assert self.directory is not None
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.sqlite_file("events")),
                "SQLITE_LOCK_TIMEOUT": str(self.lock_timeout),
                # the library's recorder, with a commit's payloads in the same transaction
                # (unless the directory is of the earlier layout: see payloads_with_events)
                "APPLICATION_RECORDER_TOPIC": "auditledger.adapters.storage.sqlite_recorder:"
                + (
                    "LedgerSQLiteRecorder"
                    if self.payloads_with_events
                    else "SeparatePayloadsSQLiteRecorder"
                ),
            }
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_CONNECT_TIMEOUT": "10",
            "POSTGRES_LOCK_TIMEOUT": str(self.lock_timeout),
            # the library's recorder, with a commit's payloads in the same transaction
            "APPLICATION_RECORDER_TOPIC": (
                "auditledger.adapters.storage.pg_recorder:LedgerPostgresRecorder"
            ),
        }

    @cached_property
    def payloads_with_events(self) -> bool:
        """Whether the payload table lives in the event store's own database, so payloads
        and events commit in one transaction: PostgreSQL; SQLite unless the directory is of
        the earlier layout (docs/architecture.md, "Storage layout", tells the rule).
        Looked at once per settings (it reads the directory), so one open decides once."""
        if self.kind == "sqlite":
            assert self.directory is not None
            if not self._file("payloads").exists():
                return True
            return _has_payload_table(self._file("events"))
        return self.kind == "postgresql"

    @property
    def on_read_only_media(self) -> bool:
        """Whether a SQLite store's directory cannot be written (read-only media, a copy
        made read-only for an auditor): its commands must then open it read-only."""
        if self.kind != "sqlite":
            return False
        assert self.directory is not None
        return self.directory.is_dir() and not os.access(self.directory, os.W_OK)

    def sqlite_file(self, purpose: Literal["events", "payloads", "landscape"]) -> Path:
        """The file of a SQLite store that holds `purpose` (the payloads may be the events')."""
        if purpose == "payloads" and self.payloads_with_events:
            purpose = "events"
        return self._file(purpose)

    def _file(self, name: Literal["events", "payloads", "landscape"]) -> Path:
        assert self.directory is not None
        return self.directory / f"{name}.sqlite3"

    def sqlalchemy_url(self, purpose: Literal["payloads", "landscape"]) -> str:
        if self.kind == "memory":
            return "sqlite://"
        if self.kind == "sqlite":
            return f"sqlite:///{self.sqlite_file(purpose).as_posix()}"
        return self.postgres_url()

    def postgres_url(self) -> str:
        from sqlalchemy import URL

        return URL.create(
            "postgresql+psycopg",
            username=self.user or None,
            password=self.password or None,
            host=self.host,
            port=self.port,
            database=self.dbname,
        ).render_as_string(hide_password=False)


def _has_payload_table(events_file: Path) -> bool:
    if not events_file.is_file():
        return False
    try:
        with closing(sqlite3.connect(events_file, timeout=60)) as conn:
            row = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'payloads'"
            ).fetchone()
    except sqlite3.Error:
        return False  # not a database: opening the store says so
    return row is not None


def _options(url: str, query: str) -> dict[str, str]:
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise StoreError(
            f"store URL {url!r}: unknown option {unknown[0]!r} (options: {', '.join(OPTIONS)})"
        )
    return options


def _retention_days(url: str, query: str) -> int:
    raw = _options(url, query).get("retention_days", str(DEFAULT_RETENTION_DAYS))
    if not raw.isdigit():
        raise StoreError(
            f"store URL {url!r}: retention_days={raw!r} is not a whole number of days >= 0"
        )
    return int(raw)


def _lock_timeout(url: str, query: str) -> int:
    raw = _options(url, query).get("lock_timeout", str(DEFAULT_LOCK_TIMEOUT))
    if not raw.isdigit() or int(raw) < 1:
        raise StoreError(
            f"store URL {url!r}: lock_timeout={raw!r} is not a whole number of seconds >= 1"
        )
    return int(raw)
