"""WritePath: load -> command -> save for the Ledger's commands (semantics: units.py).

A single command takes the aggregate's write lock, runs on a cached copy (or a fresh load),
and commits; a version conflict reloads and runs it again, bounded and with jitter, so a
caller never sees a conflict for a legal command. Inside `unit_of_work()` the commands of a
thread are collected and committed together. A typed LedgerError means nothing was written.

A command that checks one aggregate and writes another (`create_checked`, `change_checked`)
commits with a read guard on what it checked (storage/guards.py): if that aggregate was
closed in between, the store refuses the write and the command runs again on the store as
it now is, so it gets the typed error it would have got had it come second. A command that
checked the landscape (complete_run) passes `change` a log guard (`opened_since`) the same way.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent
from eventsourcing.utils import get_topic

from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.storage.guards import Guard, LogGuard, ReadGuard
from auditledger.adapters.storage.stores import Stores
from auditledger.adapters.writing.cache import AggregateCache
from auditledger.adapters.writing.group_commit import GroupCommitter
from auditledger.adapters.writing.locks import AggregateLocks
from auditledger.adapters.writing.units import StaleCopy, StaleRead, UnitOfWork
from auditledger.adapters.writing.writer import EventWriter
from auditledger.domain.batch import Batch
from auditledger.domain.errors import (
    ConcurrencyExhausted,
    LedgerError,
    StoreError,
    UnitConflict,
    UnitNesting,
    UnknownAggregate,
    UnknownBatch,
    UnknownOperation,
    UnknownRun,
    UnknownState,
)
from auditledger.domain.node_state import NodeState
from auditledger.domain.operation import Operation
from auditledger.domain.run import Run

A = TypeVar("A", bound=Aggregate)
B = TypeVar("B", bound=Aggregate)
R = TypeVar("R")

UNKNOWN: dict[type[Aggregate], type[UnknownAggregate]] = {
    Run: UnknownRun,
    NodeState: UnknownState,
    Operation: UnknownOperation,
    Batch: UnknownBatch,
}

# The events after which a check another command made of the aggregate no longer holds
# (a run that was running, a state or operation that was open or pending).
CLOSING: dict[type[Aggregate], tuple[str, ...]] = {
    Run: (get_topic(Run.RunCompleted),),
    NodeState: (get_topic(NodeState.StateCompleted), get_topic(NodeState.StateFailed)),
    Operation: (get_topic(Operation.OperationCompleted), get_topic(Operation.OperationFailed)),
}

# The events that open something of a run (a state, an operation, a batch or its retry):
# complete_run's log guard refuses its write if one naming the run came after what it read.
OPENING_RUN_CHILD: tuple[str, ...] = (
    get_topic(NodeState.StateOpened),
    get_topic(Operation.OperationStarted),
    get_topic(Batch.BatchCreated),
    get_topic(Batch.BatchRetried),
)


@lru_cache(maxsize=4096)
def _uuid_of(raw: str) -> UUID:
    """An id as a caller spells it, parsed once: a pipeline passes the same ids many times."""
    return UUID(raw)


def _rerun(command: Callable[[A], object], before: A) -> Callable[[], object]:
    """The command again, on a copy of its aggregate as it was before it ran."""
    return lambda: command(copy.deepcopy(before))


class WritePath:
    MAX_TRIES = 200

    def __init__(self, stores: Stores, *, group_commit: bool = False) -> None:
        self.app = stores.application
        self.url = stores.settings.url
        self.writer = EventWriter(stores.application, stores.payloads)
        self.cache = AggregateCache()
        self._group = GroupCommitter(self.writer.write) if group_commit else None
        self._locks = AggregateLocks()
        self._reads = AggregateCache(maxsize=1024)
        self._local = threading.local()

    @property
    def group_commit(self) -> bool:
        return self._group is not None

    # Ids and reads

    def parse_id(self, cls: type[Aggregate], raw: str | UUID) -> UUID:
        if isinstance(raw, UUID):
            return raw
        unknown = UNKNOWN.get(cls, UnknownAggregate)
        if not isinstance(raw, str):
            raise unknown(raw)
        try:
            return _uuid_of(raw)
        except ValueError:
            raise unknown(raw) from None

    def load(self, cls: type[A], raw_id: str | UUID) -> A:
        """The aggregate as the event store has it now (a fresh copy, safe to inspect)."""
        aggregate_id = self.parse_id(cls, raw_id)
        try:
            aggregate: Aggregate = self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise UNKNOWN.get(cls, UnknownAggregate)(aggregate_id) from None
        except PersistenceError as error:
            raise StoreError(f"reading {aggregate_id} from {self.url}: {error}") from None
        if not isinstance(aggregate, cls):
            raise UNKNOWN.get(cls, UnknownAggregate)(aggregate_id)
        return aggregate

    def find(self, aggregate_id: UUID) -> Aggregate | None:
        """The unit's copy if this thread's unit has one, else the store's; None if absent."""
        unit = self._unit()
        seen = None if unit is None else unit.aggregates.get(aggregate_id)
        if seen is not None:
            return seen
        try:
            found: Aggregate = self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found

    def read(self, cls: type[A], raw_id: str | UUID) -> A:
        """The aggregate as it is now, for checks: the unit's copy, or a cached copy brought
        up to date with one query for newer events (no replay of what this process read)."""
        aggregate_id = self.parse_id(cls, raw_id)
        unit = self._unit()
        seen = None if unit is None else unit.aggregates.get(aggregate_id)
        if seen is None and unit is not None:
            seen = unit.reads.get(aggregate_id)
        if seen is not None:
            return seen if isinstance(seen, cls) else self.load(cls, aggregate_id)
        cached = self._reads.take(aggregate_id)
        if cached is not None and isinstance(cached, cls):
            try:
                for event in self.app.events.get(aggregate_id, gt=cached.version):
                    cached = event.mutate(cached)  # type: ignore[attr-defined]
            except PersistenceError as error:
                raise StoreError(f"reading {aggregate_id}: {error}") from None
            aggregate = cached
        else:
            aggregate = self.load(cls, aggregate_id)
        self._reads.put(aggregate)
        if unit is not None:
            unit.reads[aggregate_id] = aggregate
        return aggregate

    def read_guarded(self, cls: type[A], raw_id: str | UUID, check: Callable[[A], bool]) -> A:
        """For a command that commits with a read guard on this aggregate (create_checked):
        the copy this process last read, without asking the store, when `check` holds of it
        and this process wrote nothing newer of it (should the store have closed it since,
        the guard refuses the write, payloads and all, and the command runs again on a fresh
        read); else `read`. Only where a write's payloads share its transaction (SQLite,
        PostgreSQL), and never in a unit of work."""
        if self._unit() is None and self.writer.payloads_in_transaction:
            aggregate_id = self.parse_id(cls, raw_id)
            seen = self._reads.look(aggregate_id, lambda a: a if isinstance(a, cls) else None)
            if seen is not None and check(seen):
                written = self.cache.look(aggregate_id, lambda a: a.version)
                if written is None or written <= seen.version:
                    return seen
        return self.read(cls, raw_id)

    def holds_now(self, cls: type[A], raw_id: str | UUID, check: Callable[[A], bool]) -> bool:
        """Whether `check` holds of the aggregate as this process last wrote it, and the store
        has nothing newer for it (one indexed query, no replay). False means "not known
        here": read it. Never inside a unit of work (the unit's copy is what counts there)."""
        if self._unit() is not None:
            return False
        aggregate_id = self.parse_id(cls, raw_id)
        seen = self.cache.look(
            aggregate_id, lambda a: a.version if isinstance(a, cls) and check(a) else None
        )
        if seen is None:
            return False
        try:
            return not self.app.recorder.select_events(aggregate_id, gt=seen, limit=1)
        except PersistenceError as error:
            raise StoreError(f"reading {aggregate_id}: {error}") from None

    # Commands

    def create(
        self,
        aggregate: Aggregate,
        payloads: Iterable[Payload],
        *,
        on_duplicate: Callable[[], LedgerError],
        guards: Sequence[Guard] = (),
        recheck: Callable[[], object] | None = None,
    ) -> None:
        """Commit a new aggregate; StaleRead when a guard failed (nothing written)."""
        if payloads and self.app.has_events(aggregate.id):
            raise on_duplicate()  # refused before its payloads are written
        unit = self._unit()
        if unit is not None:
            self._unit_create(unit, aggregate, list(payloads), on_duplicate)
            unit.rely_on(guards, recheck)
            return
        with self._locks.hold(aggregate.id):
            try:
                self._commit([aggregate], list(payloads), guards)
            except IntegrityError:
                if guards and not self.app.has_events(aggregate.id):
                    raise StaleRead from None
                raise on_duplicate() from None
        self.cache.put(aggregate)

    def create_checked(
        self,
        seen: A,
        build: Callable[[A], B],
        payloads: Sequence[Payload],
        *,
        on_duplicate: Callable[[], LedgerError],
    ) -> B:
        """Create what build makes of another aggregate, seen as read just now (build checks
        it, refusing with a typed error); committed only if that one was not closed since,
        else build runs again on it as the store now has it."""
        cls, read_id = type(seen), seen.id
        for attempt in range(self.MAX_TRIES):
            aggregate = build(seen)
            try:
                self.create(
                    aggregate,
                    payloads,
                    on_duplicate=on_duplicate,
                    guards=self._guards(seen),
                    recheck=lambda: build(self.read(cls, read_id)),
                )
            except StaleRead:
                self._back_off(attempt)
                seen = self.read(cls, read_id)
                continue
            return aggregate
        raise ConcurrencyExhausted(read_id, self.MAX_TRIES)

    def change_checked(
        self,
        cls: type[A],
        raw_id: str | UUID,
        read_cls: type[B],
        read_raw_id: str | UUID,
        command: Callable[[A, B], R],
    ) -> R:
        """Run command on one aggregate with another as it is now (read first, so an unknown
        one is refused first); committed only if that other was not closed since."""
        read_id = self.parse_id(read_cls, read_raw_id)
        seen = [self.read(read_cls, read_id)]
        runs = 0

        def run(target: A) -> R:
            nonlocal runs
            if runs:
                seen[0] = self.read(read_cls, read_id)
            runs += 1
            return command(target, seen[0])

        return self.change(cls, raw_id, run, guards=lambda: self._guards(seen[0]))

    def _guards(self, seen: Aggregate) -> list[ReadGuard]:
        unit = self._unit()
        if unit is not None and seen.id in unit.changed:
            return []  # the unit writes it: its own versions conflict with any other writer
        return [ReadGuard(seen.id, seen.version, CLOSING[type(seen)])]

    def opened_since(self, run_id: UUID, position: int) -> LogGuard:
        """A log guard: nothing of the run opened after this log position (complete_run's
        read of the landscape, caught up to it). The needle is the run id as the transcoder
        writes it in those events' state; the run's first event is the one that exists."""
        needle = self.app.mapper.transcoder.encode({"run_id": run_id})[1:-1]
        return LogGuard(run_id, 1, position, OPENING_RUN_CHILD, needle)

    @staticmethod
    def _back_off(attempt: int) -> None:
        time.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** min(attempt, 6))))

    def change(
        self,
        cls: type[A],
        raw_id: str | UUID,
        command: Callable[[A], R],
        *,
        payloads: Sequence[Payload] = (),
        companions: Callable[[A], list[Aggregate]] | None = None,
        guards: Callable[[], Sequence[Guard]] | None = None,
    ) -> R:
        aggregate_id = self.parse_id(cls, raw_id)
        unit = self._unit()
        if unit is not None:
            return self._unit_change(unit, cls, aggregate_id, command, payloads, companions, guards)
        with self._locks.hold(aggregate_id):
            return self._change_alone(cls, aggregate_id, command, payloads, companions, guards)

    def _change_alone(
        self,
        cls: type[A],
        aggregate_id: UUID,
        command: Callable[[A], R],
        payloads: Sequence[Payload],
        companions: Callable[[A], list[Aggregate]] | None,
        guards: Callable[[], Sequence[Guard]] | None,
    ) -> R:
        fresh = False
        for attempt in range(self.MAX_TRIES):
            aggregate: A | None = None if fresh else self.cache.take(aggregate_id)
            if aggregate is None or not isinstance(aggregate, cls):
                aggregate = self.load(cls, aggregate_id)
                fresh = True
            try:
                result = command(aggregate)
            except LedgerError:
                if not fresh:  # the cached copy may be stale: judge against the store
                    fresh = True
                    continue
                self.cache.put(aggregate)
                raise
            if not aggregate.pending_events:
                self.cache.put(aggregate)
                return result
            try:
                others = companions(aggregate) if companions else []
            except StaleCopy:
                fresh = True
                continue
            try:
                self._commit([aggregate, *others], payloads, guards() if guards else ())
            except IntegrityError:
                fresh = True
                self._back_off(attempt)
                continue
            self.cache.put(aggregate)
            return result
        raise ConcurrencyExhausted(aggregate_id, self.MAX_TRIES)

    # Units of work

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

    def _unit(self) -> UnitOfWork | None:
        return getattr(self._local, "unit", None)

    # The three ways to the store

    def _write(
        self,
        stored: Sequence[StoredEvent],
        payloads: Sequence[Payload],
        guards: Sequence[Guard] = (),
    ) -> None:
        if self._group is not None:
            self._group.submit(stored, payloads, guards)
        else:
            self.writer.write(stored, payloads, guards)

    def _commit(
        self,
        aggregates: Sequence[Aggregate],
        payloads: Sequence[Payload],
        guards: Sequence[Guard] = (),
    ) -> None:
        self._write(self.writer.collect(aggregates), payloads, guards)

    def _commit_unit(self, unit: UnitOfWork) -> None:
        if unit.events:
            try:
                self._write(
                    self.writer.stored(unit.events), unit.payloads, list(unit.guards.values())
                )
            except IntegrityError:
                for aggregate_id, on_duplicate in unit.created.items():
                    if self.app.has_events(aggregate_id):
                        raise on_duplicate() from None
                for recheck in unit.rechecks:
                    recheck()  # a check that no longer holds raises its command's own error
                raise UnitConflict(
                    list(
                        dict.fromkeys(
                            [*unit.changed, *(g.aggregate_id for g in unit.guards.values())]
                        )
                    ),
                    "another writer committed to one of them first",
                ) from None
            except PersistenceError as error:
                raise StoreError(f"committing a unit of work: {error}") from None
        for aggregate in unit.aggregates.values():
            self.cache.put(aggregate)

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
        guards: Callable[[], Sequence[Guard]] | None,
    ) -> R:
        for _ in range(2):
            aggregate = self._unit_aggregate(unit, cls, aggregate_id)
            reloadable = aggregate_id not in unit.fresh and aggregate_id not in unit.changed
            checked = companions is not None or guards is not None
            before = copy.deepcopy(aggregate) if checked else None
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
                    self.cache.discard(aggregate_id)
                    unit.fresh.add(aggregate_id)
                    continue
                if isinstance(error, StaleCopy):
                    raise UnitConflict(
                        [aggregate_id], "the store has a call this unit's copy does not know"
                    ) from None
                raise
            if guards is not None:
                assert before is not None
                unit.rely_on(guards(), _rerun(command, before))
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
            aggregate = None if aggregate_id in unit.fresh else self.cache.take(aggregate_id)
            if aggregate is None or not isinstance(aggregate, cls):
                aggregate = self.load(cls, aggregate_id)
                unit.fresh.add(aggregate_id)
            unit.aggregates[aggregate_id] = aggregate
        if not isinstance(aggregate, cls):
            return self.load(cls, aggregate_id)  # raises Unknown*
        return aggregate

    def _lock_in_unit(self, unit: UnitOfWork, aggregate_id: UUID) -> None:
        if aggregate_id not in unit.locked:
            self._locks.acquire(aggregate_id, unit.owner)
            unit.locked.append(aggregate_id)
