"""Concurrent writers never break call_index density, nor reuse a call_id on two parents.

Threads share one Ledger; processes (spawn) each open their own on the same SQLite
directory or PostgreSQL database. Conflicts are retried inside the Ledger: no worker may
see any error for a legal command.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from auditledger.adapters import Ledger
from auditledger.domain.call_key import CallKey, call_key_id
from auditledger.domain.errors import CallIdConflict
from auditledger.domain.node_state import NodeState

THREADS = 8
CALLS_PER_THREAD = 15
PROCESSES = 4
CALLS_PER_PROCESS = 20


def call_indices(ledger: Ledger, state_id: str) -> list[int]:
    """The call_index of every CallRecorded, in the order the event store holds them."""
    events = ledger.app.events.get(UUID(state_id))
    return [e.call_index for e in events if isinstance(e, NodeState.CallRecorded)]


def open_states(ledger: Ledger, count: int) -> tuple[str, list[str]]:
    run_id = ledger.begin_run(config={"test": "concurrency"})
    states = [
        ledger.open_state(run_id=run_id, token_id=f"tok-{i}", node_id="llm", step_index=0)
        for i in range(count)
    ]
    return run_id, states


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(count)

    def start(i: int) -> Any:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(start, range(count)))


def test_eight_threads_on_one_state_get_indices_zero_to_n_minus_one(ledger: Ledger) -> None:
    _, (state_id,) = open_states(ledger, 1)

    def work(i: int) -> list[int]:
        return [
            ledger.record_call(state_id, call_type="llm", request={"thread": i, "n": n})
            for n in range(CALLS_PER_THREAD)
        ]

    returned = sorted(index for indices in in_threads(THREADS, work) for index in indices)
    total = THREADS * CALLS_PER_THREAD
    assert returned == list(range(total))
    assert call_indices(ledger, state_id) == list(range(total))


def test_eight_threads_on_eight_states_each_get_dense_indices(ledger: Ledger) -> None:
    _, states = open_states(ledger, THREADS)

    def work(i: int) -> None:
        for n in range(CALLS_PER_THREAD):
            for state_id in (states[i], states[(i + 1) % THREADS]):
                ledger.record_call(state_id, call_type="llm", request={"thread": i, "n": n})

    in_threads(THREADS, work)
    for state_id in states:
        assert call_indices(ledger, state_id) == list(range(2 * CALLS_PER_THREAD))


def test_threads_retrying_one_call_id_record_it_once(ledger: Ledger) -> None:
    _, (state_id,) = open_states(ledger, 1)
    ledger.record_call(state_id, call_type="llm", request={"warm": "up"})

    def work(i: int) -> int:
        return ledger.record_call(
            state_id, call_type="llm", request={"same": "request"}, call_id="retry-me"
        )

    assert in_threads(THREADS, work) == [1] * THREADS
    assert call_indices(ledger, state_id) == [0, 1]


def test_threads_racing_one_call_id_on_different_states_let_exactly_one_win(
    ledger: Ledger,
) -> None:
    _, states = open_states(ledger, THREADS)

    def work(i: int) -> str:
        try:
            ledger.record_call(states[i], call_type="llm", request={"q": 1}, call_id="contested")
        except CallIdConflict as refused:
            assert refused.id == "contested"
            return "refused"
        return states[i]

    outcomes = in_threads(THREADS, work)
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1
    key = ledger.app.repository.get(call_key_id("contested"))
    assert isinstance(key, CallKey)
    assert str(key.parent_id) == winners[0]
    for state_id in states:
        assert call_indices(ledger, state_id) == ([0] if state_id == winners[0] else [])


def _process_worker(url: str, shared: str, own: str, barrier: Any, results: Any) -> None:
    outcome: dict[str, Any] = {"own": own, "errors": []}
    try:
        with Ledger.open(url) as ledger:
            barrier.wait(timeout=120)
            for n in range(CALLS_PER_PROCESS):
                ledger.record_call(shared, call_type="llm", request={"own": own, "n": n})
                ledger.record_call(own, call_type="llm", request={"n": n})
                ledger.record_call(
                    shared, call_type="llm", request={"retried": n}, call_id=f"retried-{n}"
                )
            try:
                ledger.record_call(
                    own, call_type="llm", request={"q": "race"}, call_id="one-parent-only"
                )
                outcome["race"] = "won"
            except CallIdConflict:
                outcome["race"] = "refused"
    except BaseException as error:  # reported to the parent, which fails the test
        outcome["errors"].append(f"{type(error).__name__}: {error}")
    results.put(outcome)


def run_processes(url: str) -> None:
    with Ledger.open(url) as ledger:
        _, states = open_states(ledger, PROCESSES + 1)
    shared, own_states = states[0], states[1:]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [
        context.Process(target=_process_worker, args=(url, shared, own, barrier, results))
        for own in own_states
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=300) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
                worker.join()
    assert [o["errors"] for o in outcomes] == [[]] * PROCESSES

    with Ledger.open(url) as ledger:
        per_process = CALLS_PER_PROCESS * PROCESSES
        assert call_indices(ledger, shared) == list(range(per_process + CALLS_PER_PROCESS))
        shared_events = ledger.app.events.get(UUID(shared))
        retried = [e.call_id for e in shared_events if e.__class__.__name__ == "CallRecorded"]
        assert sorted(c for c in retried if c.startswith("retried-")) == sorted(
            f"retried-{n}" for n in range(CALLS_PER_PROCESS)
        )
        winners = [o["own"] for o in outcomes if o["race"] == "won"]
        assert len(winners) == 1
        key = ledger.app.repository.get(call_key_id("one-parent-only"))
        assert str(key.parent_id) == winners[0]
        for own in own_states:
            race_call = 1 if own == winners[0] else 0
            assert call_indices(ledger, own) == list(range(CALLS_PER_PROCESS + race_call))


@pytest.mark.slow
def test_four_processes_on_one_sqlite_directory_keep_indices_dense_and_call_ids_unique(
    tmp_path: Path,
) -> None:
    run_processes(f"sqlite:///{tmp_path}/ledger")


@pytest.mark.slow
@pytest.mark.postgres
def test_four_processes_on_one_postgresql_database_keep_indices_dense_and_call_ids_unique(
    postgres_url: str,
) -> None:
    run_processes(postgres_url)
