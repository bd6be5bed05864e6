"""A command waiting for an aggregate gets its turn: writers of one process queue in order.

One thread records calls on a state back to back; another completes the state. The
completion lands within a bound (it waits for the calls already queued, not for every call
the hammering thread can make), and the hammering thread then gets ParentClosed.
"""

from __future__ import annotations

import threading
import time

import pytest

from auditledger.adapters import Ledger
from auditledger.domain.errors import ParentClosed

BOUND_SECONDS = 2.0
HAMMER_LIMIT_SECONDS = 15.0


def hammer(ledger: Ledger, state_id: str, started: threading.Event, out: dict[str, object]) -> None:
    calls = 0
    deadline = time.monotonic() + HAMMER_LIMIT_SECONDS
    try:
        while time.monotonic() < deadline:
            ledger.record_call(state_id, call_type="http", request={"n": calls})
            calls += 1
            if calls == 20:
                started.set()
        out["ended"] = "still recording at the limit"
    except ParentClosed as error:
        out["ended"] = error
    finally:
        out["calls"] = calls
        started.set()


@pytest.mark.parametrize("hammers", [1, 2])
def test_complete_state_lands_within_a_bound_while_calls_hammer_the_state(
    ledger: Ledger, hammers: int
) -> None:
    run_id = ledger.begin_run()
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="llm", step_index=0)
    outcomes: list[dict[str, object]] = [{} for _ in range(hammers)]
    started = [threading.Event() for _ in range(hammers)]
    threads = [
        threading.Thread(target=hammer, args=(ledger, state_id, started[i], outcomes[i]))
        for i in range(hammers)
    ]
    for thread in threads:
        thread.start()
    for event in started:
        event.wait(10)
    began = time.monotonic()
    ledger.complete_state(state_id, output={"done": True})
    waited = time.monotonic() - began
    for thread in threads:
        thread.join(HAMMER_LIMIT_SECONDS + 10)
    print(f"complete_state waited {waited * 1000:.1f} ms behind {hammers} hammering thread(s)")
    assert waited < BOUND_SECONDS
    for outcome in outcomes:
        assert isinstance(outcome["ended"], ParentClosed), outcome
