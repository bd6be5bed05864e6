"""A command that checks one aggregate and writes another never commits on a stale check.

open_state, begin_operation and create_batch check that the run is running; link_batch
checks that the state is not terminal. Racing complete_run / complete_state, the outcome is
always one the sequential order allows: either the command committed before the closing
event (it sits earlier in the log), or it gets the typed error it gets when it comes second
(RunClosed, InvalidLink) and wrote nothing. With threads, with processes, and in a unit.

complete_run, in turn, checks the landscape (nothing of the run unsettled) and writes the
Run: its log guard refuses the write if a state, operation or batch of the run was opened
after the position it asked at, so it re-asks and refuses with RunNotSettled. Racing
open_state, exactly one of the two wins, and never a completed run with a child opened
after its RunCompleted or still open.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from functools import partial
from typing import Any
from uuid import UUID

import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.storage.stores import Stores
from auditledger.adapters.writing.write_path import WritePath
from auditledger.domain.batch import Batch
from auditledger.domain.errors import InvalidLink, LedgerError, RunClosed, RunNotSettled
from auditledger.domain.node_state import NodeState
from auditledger.domain.operation import Operation
from auditledger.domain.run import Run

ROUNDS = 150
PROCESS_ROUNDS = 30


class Interleaved(WritePath):
    """The real write path; `between` runs once in another thread after a command read what
    it checks and before it writes: the interleaving that used to let both commands pass."""

    def __init__(self, stores: Stores, *, group_commit: bool = False) -> None:
        super().__init__(stores, group_commit=group_commit)
        self.between: Callable[[], object] | None = None

    def _interleave(self) -> None:
        between, self.between = self.between, None
        if between is not None:
            other = threading.Thread(target=between)
            other.start()
            other.join(30)

    def create(self, aggregate: Any, payloads: Any, **kwargs: Any) -> None:
        self._interleave()
        super().create(aggregate, payloads, **kwargs)

    def change(self, cls: Any, raw_id: Any, command: Any, **kwargs: Any) -> Any:
        self._interleave()
        return super().change(cls, raw_id, command, **kwargs)


def after_the_check(ledger: Ledger, other: Callable[[], object]) -> None:
    assert isinstance(ledger.writes, Interleaved)
    ledger.writes.between = other


@pytest.fixture
def interleaved(store_url: str) -> Any:
    with Ledger.open(store_url) as ledger:
        ledger.writes = Interleaved(ledger.stores)
        yield ledger


def positions(ledger: Ledger) -> dict[tuple[UUID, int], int]:
    """(aggregate id, version) -> position in the log, for every event."""
    found = ledger.app.recorder.select_notifications(start=1, limit=10**7)
    return {(UUID(str(n.originator_id)), n.originator_version): n.id for n in found}


def last_position_of(ledger: Ledger, aggregate_id: str | UUID, cls: type) -> int | None:
    at = positions(ledger)
    for event in ledger.app.events.get(UUID(str(aggregate_id))):
        if isinstance(event, cls):
            return at[(event.originator_id, event.originator_version)]
    return None


# The interleaving that used to pass, made to happen every time


def test_open_state_whose_run_completes_after_the_check_gets_run_closed(
    interleaved: Ledger,
) -> None:
    run_id = interleaved.begin_run()
    after_the_check(interleaved, lambda: interleaved.complete_run(run_id))
    with pytest.raises(RunClosed):
        interleaved.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0, input={})
    assert not interleaved.app.has_events(UUID(interleaved.state_id(token_id="t", node_id="n")))


def test_begin_operation_and_create_batch_whose_run_completes_after_the_check_get_run_closed(
    interleaved: Ledger,
) -> None:
    run_id = interleaved.begin_run()
    after_the_check(interleaved, lambda: interleaved.complete_run(run_id))
    with pytest.raises(RunClosed):
        interleaved.begin_operation(
            run_id=run_id, node_id="src", operation_type="load", operation_id=str(UUID(int=1))
        )
    assert not interleaved.app.has_events(UUID(int=1))
    other = interleaved.begin_run()
    after_the_check(interleaved, lambda: interleaved.complete_run(other))
    with pytest.raises(RunClosed):
        interleaved.create_batch(other, "agg", batch_id=str(UUID(int=2)))
    assert not interleaved.app.has_events(UUID(int=2))


def test_link_batch_whose_state_completes_after_the_check_gets_invalid_link(
    interleaved: Ledger,
) -> None:
    run_id = interleaved.begin_run()
    state = interleaved.open_state(run_id=run_id, token_id="t", node_id="agg", step_index=0)
    batch = interleaved.create_batch(run_id, "agg")
    after_the_check(interleaved, lambda: interleaved.complete_state(state))
    with pytest.raises(InvalidLink, match="already completed"):
        interleaved.link_batch(batch, state)
    assert interleaved.load(Batch, batch).version == 1


def test_a_unit_whose_run_completes_before_it_commits_raises_run_closed_and_writes_nothing(
    interleaved: Ledger,
) -> None:
    run_id = interleaved.begin_run()
    before = interleaved.log_position()
    with pytest.raises(RunClosed), interleaved.unit_of_work():
        interleaved.open_state(run_id=run_id, token_id="a", node_id="n", step_index=0)
        after_the_check(interleaved, lambda: interleaved.complete_run(run_id))
        interleaved.open_state(run_id=run_id, token_id="b", node_id="n", step_index=0)
    assert interleaved.log_position() == before + 1  # only the RunCompleted


def test_a_unit_linking_a_batch_to_a_state_completed_meanwhile_raises_invalid_link(
    interleaved: Ledger,
) -> None:
    run_id = interleaved.begin_run()
    state = interleaved.open_state(run_id=run_id, token_id="t", node_id="agg", step_index=0)
    batch = interleaved.create_batch(run_id, "agg")
    before = interleaved.log_position()
    with pytest.raises(InvalidLink), interleaved.unit_of_work():
        interleaved.add_batch_member(batch, "t")
        after_the_check(interleaved, lambda: interleaved.complete_state(state))
        interleaved.link_batch(batch, state)
    assert interleaved.log_position() == before + 1  # only the StateCompleted


def test_a_unit_relying_on_a_state_that_only_recorded_a_call_meanwhile_still_commits(
    interleaved: Ledger,
) -> None:
    run_id = interleaved.begin_run()
    state = interleaved.open_state(run_id=run_id, token_id="t", node_id="agg", step_index=0)
    batch = interleaved.create_batch(run_id, "agg")
    with interleaved.unit_of_work():
        after_the_check(
            interleaved,
            lambda: interleaved.record_call(state, call_type="http", request={"n": 1}),
        )
        interleaved.link_batch(batch, state)
    assert interleaved.load(Batch, batch).state_id == UUID(state)


def test_with_group_commit_the_loser_gets_run_closed_too(store_url: str) -> None:
    with Ledger.open(store_url, group_commit=True) as ledger:
        ledger.writes = writes = Interleaved(ledger.stores, group_commit=True)
        run_id = ledger.begin_run()
        writes.between = lambda: ledger.complete_run(run_id)
        with pytest.raises(RunClosed):
            ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        assert not ledger.app.has_events(UUID(ledger.state_id(token_id="t", node_id="n")))


# Real races: threads


def race(first: Callable[[], object], second: Callable[[], object]) -> list[Any]:
    barrier = threading.Barrier(2)
    outcomes: list[Any] = [None, None]

    def run(i: int, work: Callable[[], object]) -> None:
        barrier.wait()
        try:
            work()
            outcomes[i] = "ok"
        except LedgerError as error:
            outcomes[i] = error

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_open_state_racing_complete_run_in_threads_is_always_a_sequential_outcome(
    ledger: Ledger,
) -> None:
    refused = 0
    for i in range(ROUNDS):
        run_id = ledger.begin_run()
        opened, completed = race(
            partial(ledger.open_state, run_id=run_id, token_id=f"t{i}", node_id="n", step_index=0),
            partial(ledger.complete_run, run_id),
        )
        state_id = ledger.state_id(run_id=run_id, token_id=f"t{i}", node_id="n")
        if opened == "ok":
            assert isinstance(completed, RunNotSettled), completed
            assert last_position_of(ledger, state_id, NodeState.StateOpened) is not None
            assert last_position_of(ledger, run_id, Run.RunCompleted) is None
        else:
            assert isinstance(opened, RunClosed), opened
            assert completed == "ok"
            assert not ledger.app.has_events(UUID(state_id))
            refused += 1
    print(f"open_state refused in {refused} of {ROUNDS} rounds")


def test_link_batch_racing_complete_state_in_threads_is_always_a_sequential_outcome(
    ledger: Ledger,
) -> None:
    run_id = ledger.begin_run()
    refused = 0
    for i in range(ROUNDS):
        state = ledger.open_state(run_id=run_id, token_id=f"t{i}", node_id="agg", step_index=0)
        batch = ledger.create_batch(run_id, "agg")
        linked, completed = race(
            partial(ledger.link_batch, batch, state),
            partial(ledger.complete_state, state),
        )
        assert completed == "ok"
        if linked == "ok":
            linked_at = last_position_of(ledger, batch, Batch.BatchLinked)
            ended_at = last_position_of(ledger, state, NodeState.StateCompleted)
            assert linked_at is not None and ended_at is not None and linked_at < ended_at
        else:
            assert isinstance(linked, InvalidLink), linked
            assert ledger.load(Batch, batch).version == 1
            refused += 1
    print(f"link_batch refused in {refused} of {ROUNDS} rounds")
    ledger.catch_up()
    assert ledger.verify().passed


def test_begin_operation_and_create_batch_racing_complete_run_in_threads(ledger: Ledger) -> None:
    for i in range(ROUNDS // 3):
        made_id = UUID(int=i + 1)
        run_id = ledger.begin_run()
        make = (
            partial(
                ledger.begin_operation,
                run_id=run_id,
                node_id="src",
                operation_type="load",
                operation_id=made_id,
            )
            if i % 2
            else partial(ledger.create_batch, run_id, "agg", batch_id=made_id)
        )
        first = Operation.OperationStarted if i % 2 else Batch.BatchCreated
        made, completed = race(make, partial(ledger.complete_run, run_id))
        if made == "ok":
            assert isinstance(completed, RunNotSettled), completed
            assert last_position_of(ledger, made_id, first) is not None
            assert last_position_of(ledger, run_id, Run.RunCompleted) is None
        else:
            assert isinstance(made, RunClosed), made
            assert completed == "ok"
            assert not ledger.app.has_events(made_id)


# Real races: processes


def _open_states(url: str, runs: list[str], gate: Any, out: Any) -> None:
    with Ledger.open(url) as ledger:
        for i, run_id in enumerate(runs):
            gate.wait()
            try:
                ledger.open_state(run_id=run_id, token_id=f"t{i}", node_id="n", step_index=0)
                out.put((i, "ok"))
            except LedgerError as error:
                out.put((i, type(error).__name__))


def _complete_runs(url: str, runs: list[str], gate: Any, out: Any) -> None:
    with Ledger.open(url) as ledger:
        for i, run_id in enumerate(runs):
            gate.wait()
            try:
                ledger.complete_run(run_id)
                out.put((-1 - i, "ok"))
            except LedgerError as error:
                out.put((-1 - i, type(error).__name__))


def _create_batches(url: str, runs: list[str], gate: Any, out: Any) -> None:
    with Ledger.open(url) as ledger:
        for i, run_id in enumerate(runs):
            gate.wait()
            try:
                ledger.create_batch(run_id, "agg", batch_id=str(UUID(int=i + 1)))
                out.put((i, "ok"))
            except LedgerError as error:
                out.put((i, type(error).__name__))


def _link_batches(url: str, pairs: list[tuple[str, str]], gate: Any, out: Any) -> None:
    with Ledger.open(url) as ledger:
        for i, (batch, state) in enumerate(pairs):
            gate.wait()
            try:
                ledger.link_batch(batch, state)
                out.put((i, "ok"))
            except LedgerError as error:
                out.put((i, type(error).__name__))


def _complete_states(url: str, pairs: list[tuple[str, str]], gate: Any, out: Any) -> None:
    with Ledger.open(url) as ledger:
        for _, state in pairs:
            gate.wait()
            ledger.complete_state(state)


def in_two_processes(
    url: str, work: list[Any], rounds: list[Any], *, answers: int = 1
) -> dict[int, str]:
    """Each round's outcomes by key (i for the first worker; -1 - i for the second's, when
    both answer: `answers=2`)."""
    context = multiprocessing.get_context("spawn")
    gate, out = context.Barrier(2), context.Queue()
    processes = [context.Process(target=w, args=(url, rounds, gate, out)) for w in work]
    for process in processes:
        process.start()
    results = dict(out.get(timeout=120) for _ in range(len(rounds) * answers))
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    return results


def test_open_state_racing_complete_run_in_processes(shared_url: str) -> None:
    with Ledger.open(shared_url) as ledger:
        runs = [ledger.begin_run() for _ in range(PROCESS_ROUNDS)]
    results = in_two_processes(shared_url, [_open_states, _complete_runs], runs, answers=2)
    with Ledger.open(shared_url) as ledger:
        for i, run_id in enumerate(runs):
            state_id = ledger.state_id(run_id=run_id, token_id=f"t{i}", node_id="n")
            if results[i] == "ok":
                assert results[-1 - i] == "RunNotSettled"
                assert last_position_of(ledger, run_id, Run.RunCompleted) is None
            else:
                assert (results[i], results[-1 - i]) == ("RunClosed", "ok")
                assert not ledger.app.has_events(UUID(state_id))


def test_create_batch_racing_complete_run_in_processes(shared_url: str) -> None:
    with Ledger.open(shared_url) as ledger:
        runs = [ledger.begin_run() for _ in range(PROCESS_ROUNDS)]
    results = in_two_processes(shared_url, [_create_batches, _complete_runs], runs, answers=2)
    with Ledger.open(shared_url) as ledger:
        for i, run_id in enumerate(runs):
            if results[i] == "ok":
                assert results[-1 - i] == "RunNotSettled"
                assert last_position_of(ledger, run_id, Run.RunCompleted) is None
            else:
                assert (results[i], results[-1 - i]) == ("RunClosed", "ok")
                assert not ledger.app.has_events(UUID(int=i + 1))


def test_link_batch_racing_complete_state_in_processes(shared_url: str) -> None:
    with Ledger.open(shared_url) as ledger:
        run_id = ledger.begin_run()
        pairs = [
            (
                ledger.create_batch(run_id, "agg"),
                ledger.open_state(run_id=run_id, token_id=f"t{i}", node_id="agg", step_index=0),
            )
            for i in range(PROCESS_ROUNDS)
        ]
    results = in_two_processes(shared_url, [_link_batches, _complete_states], pairs)
    with Ledger.open(shared_url) as ledger:
        for i, (batch, state) in enumerate(pairs):
            if results[i] == "ok":
                linked_at = last_position_of(ledger, batch, Batch.BatchLinked)
                ended_at = last_position_of(ledger, state, NodeState.StateCompleted)
                assert linked_at is not None and ended_at is not None and linked_at < ended_at
            else:
                assert results[i] == "InvalidLink"
                assert ledger.load(Batch, batch).version == 1
        ledger.catch_up()
        assert ledger.verify().passed
