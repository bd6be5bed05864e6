"""In-process write locks, one per aggregate: writers in one process take turns per aggregate.

A single command holds the lock of the one aggregate it changes from load to commit, so two
threads of one process never race on it (no wasted reload); processes still race, and the
store's unique (originator_id, version) settles that.

A unit of work holds the locks of everything it changed until it commits or rolls back.
Units are ordered by age (wait-die): an older unit waits for a younger one, a younger unit
that wants a lock an older unit holds dies at once with UnitConflict. Waits therefore only
ever point from older to younger, so units never deadlock; a single command holds one lock
and waits for nothing while holding it, so it is never part of a cycle either.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from auditledger.domain.errors import UnitConflict

_ages = itertools.count()


class LockOwner:
    """Who holds a lock: a single command (age None) or a unit of work (its age)."""

    __slots__ = ("age",)

    def __init__(self, *, unit: bool) -> None:
        self.age: int | None = next(_ages) if unit else None


class AggregateLocks:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._owners: dict[UUID, LockOwner] = {}

    def acquire(self, aggregate_id: UUID, owner: LockOwner) -> None:
        with self._cond:
            while True:
                holder = self._owners.get(aggregate_id)
                if holder is None or holder is owner:
                    self._owners[aggregate_id] = owner
                    return
                if owner.age is not None and holder.age is not None and holder.age < owner.age:
                    raise UnitConflict(
                        [aggregate_id], "an older unit of work in this process is changing it"
                    )
                self._cond.wait()

    def release(self, aggregate_ids: Iterator[UUID] | list[UUID], owner: LockOwner) -> None:
        with self._cond:
            for aggregate_id in aggregate_ids:
                if self._owners.get(aggregate_id) is owner:
                    del self._owners[aggregate_id]
            self._cond.notify_all()

    @contextmanager
    def hold(self, aggregate_id: UUID) -> Iterator[None]:
        owner = LockOwner(unit=False)
        self.acquire(aggregate_id, owner)
        try:
            yield
        finally:
            self.release([aggregate_id], owner)
