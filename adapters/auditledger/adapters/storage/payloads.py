"""The content-addressed payload store: sha256 -> bytes, beside the event store.

A payload is written (and committed) before the event that references it, so a reference
never dangles. Bytes may later be purged or erased; the hash stays in the events, and reading
a purged or erased payload says so (an erased one: when, why, by which erasure; its row keeps
purged_at too, so a reader that knows only purges never sees it missing). Bytes stored again
later (the same content, named by a new event) are present again. Every read re-checks the hash.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    delete,
    func,
    insert,
    inspect,
    null,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.storage.errors import store_errors
from auditledger.adapters.storage.tables import payload_erasures, payloads
from auditledger.domain.errors import PayloadCorrupt, PayloadErased, PayloadMissing
from auditledger.domain.payload_status import Erased, Removal, check, without_bytes
from auditledger.domain.payload_status import PayloadStatus as PayloadStatus
from auditledger.projections.schema import chunked


@dataclass(frozen=True)
class ErasedBytes:
    payloads: int
    size: int


class PayloadStore(ABC):
    @abstractmethod
    def put_many(self, items: Iterable[Payload]) -> None: ...

    @abstractmethod
    def _read(self, digest: str) -> tuple[bytes | None, Removal]:
        """(bytes, removal); (None, False) when never stored."""

    @abstractmethod
    def purge(self, digests: Iterable[str]) -> int: ...

    @abstractmethod
    def erase(self, digests: Iterable[str], erasure_id: str, reason: str) -> ErasedBytes:
        """Delete the bytes of each digest that still has them, marking why (Erased)."""

    @abstractmethod
    def sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """The size of each digest's bytes, for the digests whose bytes are still there."""

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

    def read_many(self, digests: Iterable[str]) -> dict[str, tuple[bytes | None, Removal]]:
        """(bytes, removal) of each digest, as _read gives them; stores override it with one
        query per chunk (verify reads every payload a landscape refers to)."""
        return {digest: self._read(digest) for digest in set(digests)}

    def statuses(self, digests: Iterable[str]) -> dict[str, PayloadStatus]:
        """status() of each digest; stores override it with one query per chunk, no bytes
        (explain shows every payload of a run)."""
        return {digest: self.status(digest) for digest in set(digests)}

    def close(self) -> None:
        return None


def _checked(digest: str, data: bytes | None, purged: Removal) -> bytes:
    """The bytes, re-hashed against their digest; a typed error when absent or altered."""
    found = check(digest, data, purged)
    if data is None and isinstance(purged, Erased):
        raise PayloadErased(digest, purged.erased_at, purged.reason, purged.erasure_id)
    if data is None:
        raise PayloadMissing(digest, purged=found.status is PayloadStatus.PURGED)
    if found.actual is not None:
        raise PayloadCorrupt(digest, found.actual)
    return data


class MemoryPayloadStore(PayloadStore):
    def __init__(self) -> None:
        self._data: dict[str, bytes | None] = {}
        self._erased: dict[str, Erased] = {}
        self._lock = threading.Lock()

    def put_many(self, items: Iterable[Payload]) -> None:
        with self._lock:
            for item in items:
                if self._data.get(item.digest) is None:
                    self._data[item.digest] = item.data
                    self._erased.pop(item.digest, None)

    def _read(self, digest: str) -> tuple[bytes | None, Removal]:
        with self._lock:
            if digest not in self._data:
                return None, False
            data = self._data[digest]
            return data, False if data is not None else self._erased.get(digest, True)

    def sizes(self, digests: Iterable[str]) -> dict[str, int]:
        with self._lock:
            return {d: len(data) for d in set(digests) if (data := self._data.get(d)) is not None}

    def erase(self, digests: Iterable[str], erasure_id: str, reason: str) -> ErasedBytes:
        mark = Erased(datetime.now(UTC).isoformat(), reason, erasure_id)
        count = size = 0
        with self._lock:
            for digest in set(digests):
                data = self._data.get(digest)
                if data is not None:
                    self._data[digest] = None
                    self._erased[digest] = mark
                    count, size = count + 1, size + len(data)
        return ErasedBytes(count, size)

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
        self._has_marks = False

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

    def _marks(self) -> bool:
        """Whether the store has the erasure table (a store last opened before erasure, read
        without writing, has none: nothing in it was erased)."""
        if not self._has_marks:
            with self._errors("looking for erasures"):
                self._has_marks = inspect(self.engine).has_table(payload_erasures.name)
        return self._has_marks

    def _rows(self, *columns: ColumnElement[Any]) -> Select[Any]:
        """payloads (with each row's erasure, when the store can have one)."""
        if not self._marks():
            return select(
                *columns,
                null().label("erased_at"),
                null().label("reason"),
                null().label("erasure_id"),
            )
        marks = payload_erasures.c
        return select(*columns, marks.erased_at, marks.reason, marks.erasure_id).select_from(
            payloads.outerjoin(payload_erasures, marks.hash == payloads.c.hash)
        )

    def _read(self, digest: str) -> tuple[bytes | None, Removal]:
        return self.read_many([digest])[digest]

    def status(self, digest: str) -> PayloadStatus:
        """Present, purged, erased or missing, without reading the bytes."""
        return self.statuses([digest])[digest]

    def read_many(self, digests: Iterable[str]) -> dict[str, tuple[bytes | None, Removal]]:
        found: dict[str, tuple[bytes | None, Removal]] = {}
        for chunk in _chunks(digests):
            statement = self._rows(payloads.c.hash, payloads.c.data, payloads.c.purged_at)
            with self._errors("reading payloads"), self.engine.connect() as conn:
                rows = conn.execute(statement.where(payloads.c.hash.in_(chunk)))
                found.update(
                    (r.hash, (None if r.data is None else bytes(r.data), _removal(r))) for r in rows
                )
            found.update((digest, (None, False)) for digest in chunk if digest not in found)
        return found

    def statuses(self, digests: Iterable[str]) -> dict[str, PayloadStatus]:
        found: dict[str, PayloadStatus] = {}
        present = payloads.c.data.is_not(None).label("present")
        for chunk in _chunks(digests):
            statement = self._rows(payloads.c.hash, present, payloads.c.purged_at)
            with self._errors("reading payloads"), self.engine.connect() as conn:
                rows = conn.execute(statement.where(payloads.c.hash.in_(chunk)))
                for r in rows:
                    found[r.hash] = without_bytes(bool(r.present), _removal(r))
            found.update((digest, PayloadStatus.MISSING) for digest in chunk if digest not in found)
        return found

    def sizes(self, digests: Iterable[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(digests):
            with self._errors("reading payload sizes"), self.engine.connect() as conn:
                rows = conn.execute(
                    select(payloads.c.hash, func.length(payloads.c.data)).where(
                        payloads.c.hash.in_(chunk), payloads.c.data.is_not(None)
                    )
                )
                found.update((digest, int(size)) for digest, size in rows)
        return found

    def purge(self, digests: Iterable[str]) -> int:
        keys = list(digests)
        if not keys:
            return 0
        marks = self._marks()
        with self._errors("purging payloads"), self.engine.begin() as conn:
            held = payloads.c.hash.in_(keys) & payloads.c.data.is_not(None)
            if marks:  # an erasure of bytes stored again since: no longer why they are gone
                stale = select(payloads.c.hash).where(held)
                conn.execute(delete(payload_erasures).where(payload_erasures.c.hash.in_(stale)))
            result = conn.execute(
                update(payloads).where(held).values(data=None, purged_at=datetime.now(UTC))
            )
        return int(result.rowcount or 0)

    def erase(self, digests: Iterable[str], erasure_id: str, reason: str) -> ErasedBytes:
        count = size = 0
        now = datetime.now(UTC)
        for chunk in _chunks(digests):
            with self._errors("erasing payloads"), self.engine.begin() as conn:
                if self._sqlite:  # freed space is zeroed, not left readable in the file
                    conn.exec_driver_sql("PRAGMA secure_delete = ON")
                if not self._marks():
                    payload_erasures.create(conn, checkfirst=True)
                held = payloads.c.hash.in_(chunk) & payloads.c.data.is_not(None)
                rows = conn.execute(
                    select(payloads.c.hash, func.length(payloads.c.data)).where(held)
                ).all()
                if not rows:
                    continue
                erased = [digest for digest, _ in rows]
                conn.execute(delete(payload_erasures).where(payload_erasures.c.hash.in_(erased)))
                conn.execute(
                    insert(payload_erasures),
                    [
                        {"hash": d, "erasure_id": erasure_id, "erased_at": now, "reason": reason}
                        for d in erased
                    ],
                )
                conn.execute(
                    update(payloads)
                    .where(payloads.c.hash.in_(erased))
                    .values(data=None, purged_at=now)
                )
                self._has_marks = True
                count += len(rows)
                size += sum(int(length) for _, length in rows)
        return ErasedBytes(count, size)


def _removal(row: Any) -> Removal:
    if row.erased_at is not None:
        when = row.erased_at
        if isinstance(when, datetime) and when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        text = when.isoformat() if isinstance(when, datetime) else str(when)
        return Erased(text, str(row.reason), str(row.erasure_id))
    return row.purged_at is not None
