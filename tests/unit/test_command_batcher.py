"""CommandBatcher: queued commands share one commit; each caller still gets its own outcome."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest

from auditledger.adapters.writing.command_batches import CommandBatcher
from auditledger.domain.errors import InvalidArgument, UnitConflict


class FakeStore:
    """Commits what a unit collected, or each command alone outside a unit."""

    def __init__(self) -> None:
        self.commits: list[list[str]] = []
        self.pending: list[str] | None = None
        self.refuse_next_unit = False
        self.conflicted: set[str] = set()

    @contextmanager
    def unit(self) -> Iterator[None]:
        self.pending = []
        try:
            yield
        except BaseException:
            self.pending = None
            raise
        collected, self.pending = self.pending, None
        if self.refuse_next_unit:
            self.refuse_next_unit = False
            raise RuntimeError("another process committed first")
        self.commits.append(collected)

    def record(self, fact: str) -> str:
        if fact.startswith("refused"):
            raise InvalidArgument("fact", fact, "refused")
        if fact.startswith("conflict") and self.pending is not None:
            self.conflicted.add(fact)
            raise UnitConflict([], "an older unit holds it")
        if fact.startswith("broken") and self.pending is not None:
            raise TypeError("a bug")
        if self.pending is not None:
            self.pending.append(fact)
        else:
            self.commits.append([fact])
        return fact.upper()


def batched(store: FakeStore, facts: list[str]) -> tuple[CommandBatcher, list[Future[Any]]]:
    """Hold the writer on a first command, queue `facts`, then let it go: one batch."""
    gate = threading.Event()
    batcher = CommandBatcher(store.unit)
    first = batcher.submit(gate.wait)
    futures = [batcher.submit(store.record, fact) for fact in facts]
    gate.set()
    first.result(timeout=5)
    for future in futures:
        future.exception(timeout=5)
    batcher.close()
    return batcher, futures


def test_queued_commands_share_one_commit_and_each_gets_its_result() -> None:
    store = FakeStore()
    _, futures = batched(store, ["a", "b", "c"])
    assert store.commits == [["a", "b", "c"]]
    assert [f.result() for f in futures] == ["A", "B", "C"]


def test_a_refused_command_gets_its_error_and_the_rest_of_the_batch_commits() -> None:
    store = FakeStore()
    _, futures = batched(store, ["a", "refused", "c"])
    assert store.commits == [["a", "c"]]
    assert isinstance(futures[1].exception(), InvalidArgument)
    assert futures[2].result() == "C"


def test_a_refused_batch_commit_reruns_every_command_alone() -> None:
    store = FakeStore()
    store.refuse_next_unit = True
    _, futures = batched(store, ["a", "b"])
    assert store.commits == [["a"], ["b"]]
    assert [f.result() for f in futures] == ["A", "B"]


def test_an_unexpected_failure_abandons_the_batch_and_each_command_runs_alone() -> None:
    store = FakeStore()
    _, futures = batched(store, ["a", "broken", "c"])
    assert store.commits == [["a"], ["broken"], ["c"]]
    assert futures[1].result() == "BROKEN"


def test_a_command_meeting_a_unit_conflict_is_rerun_alone_after_the_batch() -> None:
    store = FakeStore()
    _, futures = batched(store, ["a", "conflict-1", "c"])
    assert store.commits == [["a", "c"], ["conflict-1"]]
    assert futures[1].result() == "CONFLICT-1"


def test_a_command_cancelled_before_its_batch_starts_never_runs() -> None:
    store = FakeStore()
    gate = threading.Event()
    batcher = CommandBatcher(store.unit)
    batcher.submit(gate.wait)
    dropped = batcher.submit(store.record, "dropped")
    kept = batcher.submit(store.record, "kept")
    assert dropped.cancel()
    gate.set()
    assert kept.result(timeout=5) == "KEPT"
    batcher.close()
    assert store.commits == [["kept"]]


def test_close_runs_what_is_queued_first() -> None:
    store = FakeStore()
    batcher = CommandBatcher(store.unit)
    futures = [batcher.submit(store.record, f"f{n}") for n in range(20)]
    batcher.close()
    assert all(f.done() for f in futures)
    assert sorted(fact for commit in store.commits for fact in commit) == sorted(
        f"f{n}" for n in range(20)
    )
    with pytest.raises(InvalidArgument, match="closed"):
        batcher.submit(store.record, "late")
