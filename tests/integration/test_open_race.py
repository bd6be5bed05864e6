"""Eight processes opening one PostgreSQL ledger at the same moment all succeed.

eventsourcing replaces its insert function on every start; two starts at once failed with
"tuple concurrently updated" until schema creation took an advisory lock.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from auditledger.adapters import Ledger

PROCESSES = 8


def _open(url: str, gate: Any, out: Any) -> None:
    try:
        gate.wait()
        Ledger.open(url).close()
        out.put("opened")
    except BaseException as error:
        out.put(f"{type(error).__name__}: {error}")


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_processes_opening_one_postgresql_ledger_at_once_all_succeed(
    postgres_url: str,
) -> None:
    Ledger.open(postgres_url).close()
    context = multiprocessing.get_context("spawn")
    gate = context.Barrier(PROCESSES, timeout=120)
    out = context.Queue()
    procs = [
        context.Process(target=_open, args=(postgres_url, gate, out)) for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    outcomes = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert outcomes == ["opened"] * PROCESSES
