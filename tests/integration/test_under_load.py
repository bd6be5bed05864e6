"""4 processes x 2 threads hammering shared states and batches: every invariant holds after.

Half the processes use group commit. Each thread records single calls and batch members on
the shared aggregates, and units of work (own state + shared call + shared member) that it
re-runs on UnitConflict. Every value a worker was given back (call index, ordinal) must be
in the log exactly where it was promised; indices and ordinals are dense; the landscape
caught up from the log passes verify (which includes: rebuild equals incremental).
"""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from auditledger.adapters import Ledger
from auditledger.domain.batch import Batch
from auditledger.domain.errors import UnitConflict
from auditledger.domain.node_state import NodeState

PROCESSES = 4
THREADS = 2
ROUNDS = 12
SHARED_STATES = 3
SHARED_BATCHES = 2


def _thread(
    ledger: Ledger, tag: str, run_id: str, shared: list[str], batches: list[str]
) -> dict[str, Any]:
    acks: dict[str, Any] = {"calls": [], "members": [], "own": [], "conflicts": 0}
    for n in range(ROUNDS):
        state = shared[n % SHARED_STATES]
        marker = f"{tag}/{n}/single"
        acks["calls"].append(
            (state, ledger.record_call(state, call_type="llm", request={"m": marker}), marker)
        )
        token = f"{tag}/{n}/member"
        acks["members"].append(
            (
                batches[n % SHARED_BATCHES],
                token,
                ledger.add_batch_member(batches[n % SHARED_BATCHES], token),
            )
        )
        while True:
            try:
                with ledger.unit_of_work():
                    own = ledger.open_state(
                        run_id=run_id, token_id=f"{tag}/{n}", node_id="n", step_index=0
                    )
                    own_calls = [
                        ledger.record_call(own, call_type="llm", request={"k": k}) for k in range(2)
                    ]
                    marker = f"{tag}/{n}/unit"
                    other = shared[(n + 1) % SHARED_STATES]
                    index = ledger.record_call(other, call_type="llm", request={"m": marker})
                    batch = batches[(n + 1) % SHARED_BATCHES]
                    token = f"{tag}/{n}/unit-member"
                    ordinal = ledger.add_batch_member(batch, token)
                    ledger.complete_state(own)
                break
            except UnitConflict:
                acks["conflicts"] += 1
        assert own_calls == [0, 1]
        acks["own"].append(own)
        acks["calls"].append((other, index, marker))
        acks["members"].append((batch, token, ordinal))
    return acks


def _process(
    url: str, index: int, run_id: str, shared: list[str], batches: list[str], gate: Any, out: Any
) -> None:
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        with Ledger.open(url, group_commit=(index % 2 == 0)) as ledger:
            gate.wait()

            def work(t: int) -> None:
                try:
                    results.append(_thread(ledger, f"p{index}t{t}", run_id, shared, batches))
                except BaseException as error:
                    errors.append(f"{type(error).__name__}: {error}")

            threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    except BaseException as error:
        errors.append(f"{type(error).__name__}: {error}")
    out.put({"results": results, "errors": errors})


def hammer(url: str) -> None:
    with Ledger.open(url) as ledger:
        run_id = ledger.begin_run(config={"test": "load"})
        shared = [
            ledger.open_state(run_id=run_id, token_id=f"shared-{i}", node_id="n", step_index=0)
            for i in range(SHARED_STATES)
        ]
        batches = [ledger.create_batch(run_id, "agg") for _ in range(SHARED_BATCHES)]
    context = multiprocessing.get_context("spawn")
    gate = context.Barrier(PROCESSES, timeout=120)
    out = context.Queue()
    procs = [
        context.Process(target=_process, args=(url, i, run_id, shared, batches, gate, out))
        for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    reports = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert [r["errors"] for r in reports] == [[]] * PROCESSES
    acks = [a for r in reports for a in r["results"]]
    assert len(acks) == PROCESSES * THREADS

    with Ledger.open(url) as ledger:
        for state_id in shared:
            events = [
                e
                for e in ledger.app.events.get(UUID(state_id))
                if isinstance(e, NodeState.CallRecorded)
            ]
            assert [e.call_index for e in events] == list(range(len(events)))
            logged = {e.call_index: e.request_hash for e in events}
            promised = [(i, m) for a in acks for (s, i, m) in a["calls"] if s == state_id]
            assert len(promised) == len(events)
            assert sorted(i for i, _ in promised) == list(range(len(events)))
            for index, marker in promised:
                assert logged[index] == _request_hash({"m": marker}), (state_id, index, marker)
        for batch_id in batches:
            members = ledger.load(Batch, batch_id).members
            promised_members = {t: o for a in acks for (b, t, o) in a["members"] if b == batch_id}
            assert members == promised_members
            assert sorted(members.values()) == list(range(len(members)))
        for a in acks:
            for own in a["own"]:
                state = ledger.load(NodeState, own)
                assert (state.status, state.call_count) == ("completed", 2)
        ledger.catch_up()
        report = ledger.verify()
        assert report.passed, [c for c in report.checks if not c.passed]


def _request_hash(value: Any) -> str:
    from auditledger.adapters.storage.canonical import Payload

    return Payload.of_json(value, "request").digest


@pytest.mark.slow
def test_four_processes_of_two_threads_on_one_sqlite_directory_keep_every_invariant(
    tmp_path: Path,
) -> None:
    hammer(f"sqlite:///{tmp_path}/ledger")


@pytest.mark.slow
@pytest.mark.postgres
def test_four_processes_of_two_threads_on_one_postgresql_database_keep_every_invariant(
    postgres_url: str,
) -> None:
    hammer(postgres_url)
