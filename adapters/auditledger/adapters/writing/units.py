"""How the Ledger's commands reach the store: one commit each, a unit of work, or group commit.

`with ledger.unit_of_work():` collects the commands of this thread and commits all their
events (and payloads) in one transaction when the block ends; an exception in the block
writes nothing. Inside the unit, commands see each other's effects (a call index counts the
unit's earlier calls; a batch can link a state the unit opened).

Version conflicts. Values a unit has already returned (call indices, ordinals) must never
change silently, so a unit is never re-run behind the caller's back:
- inside one process, a unit holds the write lock of every aggregate it changed until it
  ends, so other threads' commands on them wait for it (see locks.py: units never
  deadlock; a younger unit that meets an older one dies at once with UnitConflict);
- a conflict with another process (it committed to a touched aggregate first) refuses the
  whole commit: nothing is written and UnitConflict (retryable) names the aggregates.
  The caller runs the unit again; its new values come from the store as it now is.
Creating an aggregate the unit already created is refused at the command; one that already
exists in the store is found when the unit commits (the store's unique version refuses it):
the unit then raises that command's own error (DuplicateAttempt and friends) and writes
nothing. Checks read the store once per unit (the run of each new state is read once).

Group commit (`Ledger.open(url, group_commit=True)`): a single command still returns only
after its events are committed, but concurrent commands share commits (group_commit.py).
A single command that loses a race was never answered, so it is simply re-run.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent

from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.storage.event_store import LedgerApplication
from auditledger.adapters.storage.stores import Stores
from auditledger.adapters.writing.cache import AggregateCache
from auditledger.adapters.writing.group_commit import GroupCommitter
from auditledger.adapters.writing.locks import AggregateLocks, LockOwner
from auditledger.adapters.writing.writer import EventWriter
from auditledger.domain.errors import LedgerError, StoreError, UnitConflict, UnitNesting

A = TypeVar("A", bound=Aggregate)
R = TypeVar("R")


class StaleCopy(Exception):
    """The copy is behind the store: reload and run the command again."""


class UnitOfWork:
    """What one open unit changed: its aggregates (locked), events in command order, payloads."""

    def __init__(self) -> None:
        self.owner = LockOwner(unit=True)
        self.aggregates: dict[UUID, Aggregate] = {}
        self.fresh: set[UUID] = set()
        self.changed: set[UUID] = set()
        self.locked: list[UUID] = []
        self.events: list[Any] = []
        self.payloads: list[Payload] = []
        self.created: dict[UUID, Callable[[], LedgerError]] = {}
        self.reads: dict[UUID, Aggregate] = {}

    @property
    def event_count(self) -> int:
        return len(self.events)


class UnitsMixin:
    app: LedgerApplication
    _cache: AggregateCache
    MAX_TRIES: int

    _load: Callable[..., Any]

    def _init_write_paths(self, stores: Stores, *, group_commit: bool = False) -> None:
        self._writer = EventWriter(stores.application, stores.payloads)
        self._group = GroupCommitter(self._writer.write) if group_commit else None
        self._locks = AggregateLocks()
        self._reads = AggregateCache(maxsize=1024)
        self._local = threading.local()

    @property
    def group_commit(self) -> bool:
        return self._group is not None

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """Record the commands of this block in one transaction: all of them, or none."""
        if self._unit() is not None:
            raise UnitNesting()
        unit = UnitOfWork()
        self._local.unit = unit
        try:
            yield unit
        except BaseException:
            self._local.unit = None
            self._locks.release(unit.locked, unit.owner)
            raise
        self._local.unit = None
        try:
            self._commit_unit(unit)
        finally:
            self._locks.release(unit.locked, unit.owner)

    # The three ways to the store

    def _unit(self) -> UnitOfWork | None:
        return getattr(self._local, "unit", None)

    def _write(self, stored: Sequence[StoredEvent], payloads: Sequence[Payload]) -> None:
        if self._group is not None:
            self._group.submit(stored, payloads)
        else:
            self._writer.write(stored, payloads)

    def _commit(self, aggregates: Sequence[Aggregate], payloads: Sequence[Payload]) -> None:
        self._write(self._writer.collect(aggregates), payloads)

    def _commit_unit(self, unit: UnitOfWork) -> None:
        if unit.events:
            try:
                self._write(self._writer.stored(unit.events), unit.payloads)
            except IntegrityError:
                for aggregate_id, on_duplicate in unit.created.items():
                    if self.app.has_events(aggregate_id):
                        raise on_duplicate() from None
                raise UnitConflict(
                    list(unit.changed), "another writer committed to one of them first"
                ) from None
            except PersistenceError as error:
                raise StoreError(f"committing a unit of work: {error}") from None
        for aggregate in unit.aggregates.values():
            self._cache.put(aggregate)

    # Commands inside a unit

    def _unit_create(
        self,
        unit: UnitOfWork,
        aggregate: Aggregate,
        payloads: Sequence[Payload],
        on_duplicate: Callable[[], LedgerError],
    ) -> None:
        aggregate_id = aggregate.id
        if aggregate_id in unit.aggregates:
            raise on_duplicate()
        self._lock_in_unit(unit, aggregate_id)
        unit.created[aggregate_id] = on_duplicate
        unit.aggregates[aggregate_id] = aggregate
        unit.fresh.add(aggregate_id)
        unit.changed.add(aggregate_id)
        unit.events.extend(aggregate.collect_events())
        unit.payloads.extend(payloads)

    def _unit_change(
        self,
        unit: UnitOfWork,
        cls: type[A],
        aggregate_id: UUID,
        command: Callable[[A], R],
        payloads: Sequence[Payload],
        companions: Callable[[A], list[Aggregate]] | None,
    ) -> R:
        for _ in range(2):
            aggregate = self._unit_aggregate(unit, cls, aggregate_id)
            reloadable = aggregate_id not in unit.fresh and aggregate_id not in unit.changed
            before = copy.deepcopy(aggregate) if companions is not None else None
            try:
                result = command(aggregate)
                if not aggregate.pending_events:
                    return result
                others = companions(aggregate) if companions is not None else []
                for other in others:
                    if other.id in unit.aggregates:
                        raise UnitConflict([other.id], "the unit already changed it")
                    self._lock_in_unit(unit, other.id)
            except (LedgerError, StaleCopy) as error:
                if before is not None:
                    unit.aggregates[aggregate_id] = before
                if reloadable:  # judged on a cached copy: judge again against the store
                    del unit.aggregates[aggregate_id]
                    self._cache.discard(aggregate_id)
                    unit.fresh.add(aggregate_id)
                    continue
                if isinstance(error, StaleCopy):
                    raise UnitConflict(
                        [aggregate_id], "the store has a call this unit's copy does not know"
                    ) from None
                raise
            unit.changed.add(aggregate_id)
            unit.events.extend(aggregate.collect_events())
            for other in others:
                unit.aggregates[other.id] = other
                unit.fresh.add(other.id)
                unit.changed.add(other.id)
                unit.events.extend(other.collect_events())
            unit.payloads.extend(payloads)
            return result
        raise UnitConflict([aggregate_id], "its copy kept disagreeing with the store")

    def _unit_aggregate(self, unit: UnitOfWork, cls: type[A], aggregate_id: UUID) -> A:
        aggregate = unit.aggregates.get(aggregate_id)
        if aggregate is None:
            self._lock_in_unit(unit, aggregate_id)
            aggregate = None if aggregate_id in unit.fresh else self._cache.take(aggregate_id)
            if aggregate is None or not isinstance(aggregate, cls):
                aggregate = self._load(cls, aggregate_id)
                unit.fresh.add(aggregate_id)
            unit.aggregates[aggregate_id] = aggregate
        if not isinstance(aggregate, cls):
            return self._load(cls, aggregate_id)  # type: ignore[no-any-return]  # raises Unknown*
        return aggregate

    def _lock_in_unit(self, unit: UnitOfWork, aggregate_id: UUID) -> None:
        if aggregate_id not in unit.locked:
            self._locks.acquire(aggregate_id, unit.owner)
            unit.locked.append(aggregate_id)

    # Reads that commands check against (the run of a new state, the state a batch links to)

    def _unit_view(self, aggregate_id: UUID) -> Aggregate | None:
        unit = self._unit()
        return None if unit is None else unit.aggregates.get(aggregate_id)

    def _read(self, cls: type[A], raw_id: str | UUID) -> A:
        """The aggregate as it is now, for checks: the unit's copy, or a cached copy brought
        up to date with one query for newer events (no replay of what this process read)."""
        aggregate_id: UUID = self._parse_id(cls, raw_id)  # type: ignore[attr-defined]
        unit = self._unit()
        seen = None if unit is None else unit.aggregates.get(aggregate_id)
        if seen is None and unit is not None:
            seen = unit.reads.get(aggregate_id)
        if seen is not None:
            if not isinstance(seen, cls):
                return self._load(cls, aggregate_id)  # type: ignore[no-any-return]
            return seen
        cached = self._reads.take(aggregate_id)
        if cached is not None and isinstance(cached, cls):
            try:
                for event in self.app.events.get(aggregate_id, gt=cached.version):
                    cached = event.mutate(cached)  # type: ignore[attr-defined]
            except PersistenceError as error:
                raise StoreError(f"reading {aggregate_id}: {error}") from None
            aggregate = cached
        else:
            aggregate = self._load(cls, aggregate_id)
        self._reads.put(aggregate)
        if unit is not None:
            unit.reads[aggregate_id] = aggregate
        return aggregate
