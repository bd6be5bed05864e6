"""AggregateLocks: waiters get the lock in arrival order; wait-die holds when it is handed on."""

from __future__ import annotations

import threading
import time
from uuid import uuid4

import pytest

from auditledger.adapters.writing.locks import AggregateLocks, LockOwner
from auditledger.domain.errors import UnitConflict


def wait_for(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.001)


def test_a_release_hands_the_lock_to_the_first_waiter_not_to_whoever_asks_next() -> None:
    locks, aggregate = AggregateLocks(), uuid4()
    first, waiter = LockOwner(unit=False), LockOwner(unit=False)
    locks.acquire(aggregate, first)
    got: list[str] = []

    def wait_then_release() -> None:
        locks.acquire(aggregate, waiter)
        got.append("waiter")
        locks.release([aggregate], waiter)

    thread = threading.Thread(target=wait_then_release)
    thread.start()
    wait_for(lambda: locks.waiting(aggregate) == 1)
    locks.release([aggregate], first)
    again = LockOwner(unit=False)
    locks.acquire(aggregate, again)  # the releasing thread asks again at once: it queues
    got.append("again")
    thread.join(5)
    assert got == ["waiter", "again"]


def test_waiters_take_turns_in_arrival_order() -> None:
    locks, aggregate = AggregateLocks(), uuid4()
    holder = LockOwner(unit=False)
    locks.acquire(aggregate, holder)
    order: list[int] = []

    def take(i: int) -> None:
        owner = LockOwner(unit=False)
        locks.acquire(aggregate, owner)
        order.append(i)
        locks.release([aggregate], owner)

    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=take, args=(i,)))
        threads[-1].start()
        wait_for(lambda n=i + 1: locks.waiting(aggregate) == n)  # type: ignore[misc]
    locks.release([aggregate], holder)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_younger_unit_waiting_dies_when_the_lock_is_handed_to_an_older_unit() -> None:
    locks, aggregate = AggregateLocks(), uuid4()
    command = LockOwner(unit=False)
    older, younger = LockOwner(unit=True), LockOwner(unit=True)
    locks.acquire(aggregate, command)
    outcome: dict[str, object] = {}

    def wait_as(name: str, owner: LockOwner) -> None:
        try:
            locks.acquire(aggregate, owner)
            outcome[name] = "acquired"
        except UnitConflict as error:
            outcome[name] = error

    first = threading.Thread(target=wait_as, args=("older", older))
    first.start()
    wait_for(lambda: locks.waiting(aggregate) == 1)
    second = threading.Thread(target=wait_as, args=("younger", younger))
    second.start()
    wait_for(lambda: locks.waiting(aggregate) == 2)
    locks.release([aggregate], command)
    first.join(5)
    second.join(5)
    assert outcome["older"] == "acquired"
    assert isinstance(outcome["younger"], UnitConflict)
    assert locks.waiting(aggregate) == 0
    locks.release([aggregate], older)
    fresh = LockOwner(unit=False)
    locks.acquire(aggregate, fresh)  # nothing left queued: taken at once


def test_a_younger_unit_dies_at_once_on_a_lock_an_older_unit_holds() -> None:
    locks, aggregate = AggregateLocks(), uuid4()
    older, younger = LockOwner(unit=True), LockOwner(unit=True)
    locks.acquire(aggregate, older)
    with pytest.raises(UnitConflict):
        locks.acquire(aggregate, younger)
    assert locks.waiting(aggregate) == 0
