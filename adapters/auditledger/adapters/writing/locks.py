"""In-process write locks, one per aggregate: writers in one process take turns per aggregate.

A single command holds the lock of the one aggregate it changes from load to commit, so two
threads of one process never race on it (no wasted reload); processes still race, and the
store's unique (originator_id, version) settles that.

Turns are fair: the writers waiting for an aggregate queue in arrival order and a release
hands the lock to the first of them, so a thread that releases and asks again at once goes
to the back (without that, a thread recording calls back to back kept the lock from a
waiting complete_state for tens of seconds).

A unit of work holds the locks of everything it changed until it commits or rolls back.
Units are ordered by age (wait-die): an older unit waits for a younger one, a younger unit
that wants a lock an older unit holds (now, or when it is handed on while the younger waits)
dies with UnitConflict. Waits therefore only
ever point from older to younger, so units never deadlock; a single command holds one lock
and waits for nothing while holding it, so it is never part of a cycle either.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
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


def _dies(owner: LockOwner, holder: LockOwner | None) -> bool:
    """Wait-die: a younger unit never waits for an older one."""
    return (
        holder is not None
        and owner.age is not None
        and holder.age is not None
        and holder.age < owner.age
    )


class AggregateLocks:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._owners: dict[UUID, LockOwner] = {}
        self._waiting: dict[UUID, deque[LockOwner]] = {}

    def waiting(self, aggregate_id: UUID) -> int:
        """How many writers wait for the aggregate's lock."""
        with self._cond:
            return len(self._waiting.get(aggregate_id, ()))

    def acquire(self, aggregate_id: UUID, owner: LockOwner) -> None:
        with self._cond:
            holder = self._owners.get(aggregate_id)
            if holder is None:
                self._owners[aggregate_id] = owner
                return
            if holder is owner:
                return
            queue = self._waiting.setdefault(aggregate_id, deque())
            queue.append(owner)
            try:
                while (holder := self._owners.get(aggregate_id)) is not owner:
                    if _dies(owner, holder):
                        raise UnitConflict(
                            [aggregate_id], "an older unit of work in this process is changing it"
                        )
                    self._cond.wait()
            except BaseException:
                queue.remove(owner)
                if not queue:
                    del self._waiting[aggregate_id]
                raise

    def release(self, aggregate_ids: Iterator[UUID] | list[UUID], owner: LockOwner) -> None:
        with self._cond:
            for aggregate_id in aggregate_ids:
                if self._owners.get(aggregate_id) is not owner:
                    continue
                queue = self._waiting.get(aggregate_id)
                if queue:
                    self._owners[aggregate_id] = queue.popleft()  # handed on: its turn
                    if not queue:
                        del self._waiting[aggregate_id]
                else:
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
