"""Group commit: threads of one Ledger share commits; each call is committed when it returns.

Runs on memory, SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from uuid import UUID

import pytest

from auditledger.adapters import Ledger
from auditledger.domain.node_state import NodeState

THREADS = 6
CALLS = 12


@pytest.fixture
def grouped(store_url: str) -> Iterator[Ledger]:
    with Ledger.open(store_url, group_commit=True) as opened:
        yield opened


def indices(ledger: Ledger, state_id: str) -> list[int]:
    return [
        e.call_index
        for e in ledger.app.events.get(UUID(state_id))
        if isinstance(e, NodeState.CallRecorded)
    ]


def in_threads(count: int, work: object) -> None:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def start(i: int) -> None:
        barrier.wait()
        try:
            work(i)  # type: ignore[operator]
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_every_call_is_in_the_store_when_record_call_returns(grouped: Ledger) -> None:
    run_id = grouped.begin_run(config={})
    states = [
        grouped.open_state(run_id=run_id, token_id=f"t{i}", node_id="n", step_index=0)
        for i in range(THREADS)
    ]
    shared = grouped.open_state(run_id=run_id, token_id="shared", node_id="n", step_index=0)
    missing: list[tuple[str, int]] = []

    def work(i: int) -> None:
        for n in range(CALLS):
            index = grouped.record_call(states[i], call_type="llm", request={"i": i, "n": n})
            if index not in indices(grouped, states[i]):
                missing.append((states[i], index))
            grouped.record_call(shared, call_type="llm", request={"i": i, "n": n, "s": 1})

    in_threads(THREADS, work)
    assert missing == []
    for state_id in states:
        assert indices(grouped, state_id) == list(range(CALLS))
    assert indices(grouped, shared) == list(range(THREADS * CALLS))


def test_a_caller_behind_another_writer_is_retried_not_failed(grouped: Ledger) -> None:
    other = Ledger(grouped.stores)
    run_id = grouped.begin_run(config={})
    state_id = grouped.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    assert grouped.record_call(state_id, call_type="llm", request={"n": 0}) == 0
    assert other.record_call(state_id, call_type="llm", request={"n": 1}) == 1
    results: list[int] = []

    def work(i: int) -> None:
        results.append(grouped.record_call(state_id, call_type="llm", request={"t": i}))

    in_threads(4, work)
    assert sorted(results) == [2, 3, 4, 5]
    assert indices(grouped, state_id) == list(range(6))


def test_a_unit_of_work_commits_through_the_group(grouped: Ledger) -> None:
    run_id = grouped.begin_run(config={})

    def work(i: int) -> None:
        with grouped.unit_of_work():
            state_id = grouped.open_state(
                run_id=run_id, token_id=f"t{i}", node_id="n", step_index=0
            )
            for n in range(3):
                assert grouped.record_call(state_id, call_type="llm", request={"n": n}) == n
            grouped.complete_state(state_id)

    in_threads(THREADS, work)
    for i in range(THREADS):
        state = grouped.load(
            NodeState, grouped.state_id(run_id=run_id, token_id=f"t{i}", node_id="n")
        )
        assert (state.status, state.call_count) == ("completed", 3)
