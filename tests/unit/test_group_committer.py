"""GroupCommitter: callers that arrive during a commit share the next one; a refused shared
commit fails only the callers that really conflict."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from auditledger.adapters.writing.group_commit import GroupCommitter


def event(tag: str) -> StoredEvent:
    return StoredEvent(originator_id=uuid4(), originator_version=1, topic=tag, state=b"{}")


class Store:
    """A fake write: remembers each commit; the first one waits for a gate to open."""

    def __init__(self, refuse: str | None = None) -> None:
        self.commits: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.refuse = refuse

    def write(
        self, stored: Sequence[StoredEvent], payloads: Sequence[Any], guards: Sequence[Any] = ()
    ) -> None:
        if not self.commits and not self.entered.is_set():
            self.entered.set()
            self.gate.wait(10)
        tags = [e.topic for e in stored]
        if self.refuse in tags:
            raise IntegrityError("duplicate version")
        self.commits.append(tags)


def submit_in_threads(
    committer: GroupCommitter, tags: list[str]
) -> tuple[dict[str, str], list[threading.Thread]]:
    outcomes: dict[str, str] = {}

    def one(tag: str) -> None:
        try:
            committer.submit([event(tag)], [])
            outcomes[tag] = "committed"
        except IntegrityError:
            outcomes[tag] = "conflict"

    threads = [threading.Thread(target=one, args=(tag,)) for tag in tags]
    for thread in threads:
        thread.start()
    return outcomes, threads


def wait_queued(committer: GroupCommitter, count: int) -> None:
    deadline = time.monotonic() + 10
    while committer.waiting < count and time.monotonic() < deadline:
        time.sleep(0.005)


def test_callers_arriving_during_a_commit_share_the_next_one() -> None:
    store = Store()
    committer = GroupCommitter(store.write)
    first = threading.Thread(target=committer.submit, args=([event("first")], []))
    first.start()
    store.entered.wait(10)
    outcomes, threads = submit_in_threads(committer, ["a", "b", "c", "d"])
    wait_queued(committer, 4)
    assert committer.waiting == 4
    store.gate.set()
    first.join()
    for thread in threads:
        thread.join()
    assert committer.waiting == 0
    assert store.commits[0] == ["first"]
    assert sorted(store.commits[1]) == ["a", "b", "c", "d"]
    assert len(store.commits) == 2
    assert outcomes == dict.fromkeys("abcd", "committed")


def test_a_refused_shared_commit_fails_only_the_conflicting_caller() -> None:
    store = Store(refuse="bad")
    committer = GroupCommitter(store.write)
    first = threading.Thread(target=committer.submit, args=([event("first")], []))
    first.start()
    store.entered.wait(10)
    outcomes, threads = submit_in_threads(committer, ["a", "bad", "c"])
    wait_queued(committer, 3)
    store.gate.set()
    first.join()
    for thread in threads:
        thread.join()
    assert outcomes == {"a": "committed", "bad": "conflict", "c": "committed"}
    assert sorted(tag for commit in store.commits for tag in commit) == ["a", "c", "first"]


def test_a_caller_returns_only_after_its_own_commit() -> None:
    store = Store()
    committer = GroupCommitter(store.write)
    outcomes, (caller,) = submit_in_threads(committer, ["x"])
    assert store.entered.wait(10)  # its commit has started and is held at the gate
    caller.join(0.2)
    assert caller.is_alive() and outcomes == {}

    store.gate.set()
    caller.join(10)
    assert outcomes == {"x": "committed"}
    assert store.commits == [["x"]]


def test_a_store_failure_reaches_the_caller() -> None:
    def broken(
        stored: Sequence[StoredEvent], payloads: Sequence[Any], guards: Sequence[Any] = ()
    ) -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        GroupCommitter(broken).submit([event("x")], [])
