"""The content-addressed payload store: sha256 -> bytes, beside the event store.

A payload is written (and committed) before the event that references it, so a reference
never dangles. Bytes may later be purged; the hash stays in the events, and reading a purged
payload says so. Every read re-checks the hash.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite

from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.storage.errors import store_errors
from auditledger.adapters.storage.tables import payloads
from auditledger.domain.errors import PayloadCorrupt, PayloadMissing
from auditledger.domain.payload_status import PayloadStatus as PayloadStatus
from auditledger.domain.payload_status import check, without_bytes
from auditledger.projections.schema import chunked


class PayloadStore(ABC):
    @abstractmethod
    def put_many(self, items: Iterable[Payload]) -> None: ...

    @abstractmethod
    def _read(self, digest: str) -> tuple[bytes | None, bool]:
        """(bytes, purged); (None, False) when never stored."""

    @abstractmethod
    def purge(self, digests: Iterable[str]) -> int: ...

    def get(self, digest: str) -> bytes:
        return _checked(digest, *self._read(digest))

    def get_many(self, digests: Iterable[str]) -> dict[str, bytes]:
        """get() of each digest, read in bulk: PayloadMissing or PayloadCorrupt as get()."""
        return {
            d: _checked(d, data, purged) for d, (data, purged) in self.read_many(digests).items()
        }

    def status(self, digest: str) -> PayloadStatus:
        data, purged = self._read(digest)
        return without_bytes(data is not None, purged)

    def read_many(self, digests: Iterable[str]) -> dict[str, tuple[bytes | None, bool]]:
        """(bytes, purged) of each digest, as _read gives them; stores override it with one
        query per chunk (verify reads every payload a landscape refers to)."""
        return {digest: self._read(digest) for digest in set(digests)}

    def statuses(self, digests: Iterable[str]) -> dict[str, PayloadStatus]:
        """status() of each digest; stores override it with one query per chunk, no bytes
        (explain shows every payload of a run)."""
        return {digest: self.status(digest) for digest in set(digests)}

    def close(self) -> None:
        return None


def _checked(digest: str, data: bytes | None, purged: bool) -> bytes:
    """The bytes, re-hashed against their digest; a typed error when absent or altered."""
    found = check(digest, data, purged)
    if data is None:
        raise PayloadMissing(digest, purged=found.status is PayloadStatus.PURGED)
    if found.actual is not None:
        raise PayloadCorrupt(digest, found.actual)
    return data


class MemoryPayloadStore(PayloadStore):
    def __init__(self) -> None:
        self._data: dict[str, bytes | None] = {}
        self._lock = threading.Lock()

    def put_many(self, items: Iterable[Payload]) -> None:
        with self._lock:
            for item in items:
                if self._data.get(item.digest) is None:
                    self._data[item.digest] = item.data

    def _read(self, digest: str) -> tuple[bytes | None, bool]:
        with self._lock:
            if digest not in self._data:
                return None, False
            data = self._data[digest]
            return data, data is None

    def purge(self, digests: Iterable[str]) -> int:
        count = 0
        with self._lock:
            for digest in digests:
                if self._data.get(digest) is not None:
                    self._data[digest] = None
                    count += 1
        return count


SQLITE_UPSERT = (
    "INSERT INTO payloads (hash, data, size, created_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (hash) DO UPDATE SET data = excluded.data, purged_at = NULL "
    "WHERE payloads.data IS NULL"
)
_SQLITE_WHEN = payloads.c.created_at.type.dialect_impl(sqlite.dialect()).bind_processor(
    sqlite.dialect()
)


def sqlite_payload_rows(items: Iterable[Payload]) -> list[tuple[str, bytes, int, str]]:
    """Rows for SQLITE_UPSERT, one per digest, in hash order (two writers sharing payloads
    take their row locks in the same order), stamped with SQLAlchemy's own DateTime form."""
    unique = sorted({item.digest: item for item in items}.items())
    assert _SQLITE_WHEN is not None
    when = _SQLITE_WHEN(datetime.now(UTC))
    return [(digest, p.data, len(p.data), when) for digest, p in unique]


def _chunks(digests: Iterable[str]) -> Iterator[Sequence[str]]:
    return chunked(sorted(set(digests)))


class SqlPayloadStore(PayloadStore):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert(payloads)
        self._upsert = self._insert.on_conflict_do_update(  # built once: compiled once
            index_elements=["hash"],
            set_={"data": self._insert.excluded.data, "purged_at": None},
            where=payloads.c.data.is_(None),
        )
        self._sqlite = engine.dialect.name == "sqlite"

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        return store_errors(f"{doing} in the payload store", self.engine.url)

    def put_many(self, items: Iterable[Payload]) -> None:
        unique = {item.digest: item for item in items}
        if not unique:
            return
        with self._errors("writing payloads"), self.engine.begin() as conn:
            if self._sqlite:  # the driver directly: no per-row processing
                conn.exec_driver_sql(SQLITE_UPSERT, sqlite_payload_rows(unique.values()))
                return
            now = datetime.now(UTC)
            rows = [
                {"hash": p.digest, "data": p.data, "size": len(p.data), "created_at": now}
                for p in unique.values()
            ]
            conn.execute(self._upsert, rows)

    def _read(self, digest: str) -> tuple[bytes | None, bool]:
        with self._errors(f"reading payload {digest}"), self.engine.connect() as conn:
            row = conn.execute(
                select(payloads.c.data, payloads.c.purged_at).where(payloads.c.hash == digest)
            ).first()
        if row is None:
            return None, False
        return (bytes(row.data) if row.data is not None else None), row.purged_at is not None

    def status(self, digest: str) -> PayloadStatus:
        """Present, purged or missing, without reading the bytes."""
        return self.statuses([digest])[digest]

    def read_many(self, digests: Iterable[str]) -> dict[str, tuple[bytes | None, bool]]:
        found: dict[str, tuple[bytes | None, bool]] = {}
        for chunk in _chunks(digests):
            with self._errors("reading payloads"), self.engine.connect() as conn:
                rows = conn.execute(
                    select(payloads.c.hash, payloads.c.data, payloads.c.purged_at).where(
                        payloads.c.hash.in_(chunk)
                    )
                )
                found.update(
                    (r.hash, (None if r.data is None else bytes(r.data), r.purged_at is not None))
                    for r in rows
                )
            found.update((digest, (None, False)) for digest in chunk if digest not in found)
        return found

    def statuses(self, digests: Iterable[str]) -> dict[str, PayloadStatus]:
        found: dict[str, PayloadStatus] = {}
        present = payloads.c.data.is_not(None).label("present")
        for chunk in _chunks(digests):
            with self._errors("reading payloads"), self.engine.connect() as conn:
                rows = conn.execute(
                    select(payloads.c.hash, present, payloads.c.purged_at).where(
                        payloads.c.hash.in_(chunk)
                    )
                )
                for r in rows:
                    found[r.hash] = without_bytes(bool(r.present), r.purged_at is not None)
            found.update((digest, PayloadStatus.MISSING) for digest in chunk if digest not in found)
        return found

    def purge(self, digests: Iterable[str]) -> int:
        keys = list(digests)
        if not keys:
            return 0
        with self._errors("purging payloads"), self.engine.begin() as conn:
            result = conn.execute(
                update(payloads)
                .where(payloads.c.hash.in_(keys), payloads.c.data.is_not(None))
                .values(data=None, purged_at=datetime.now(UTC))
            )
        return int(result.rowcount or 0)
