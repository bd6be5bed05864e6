"""A writer killed with SIGKILL in the middle of a unit of work.

The writer records units of five states (two calls each, completed) and prints ACK u after
unit u is committed. Killed while a unit is open (it says INSIDE, then waits), or at a random
moment (possibly inside the commit): after restart every acknowledged unit is there whole,
any other unit is there whole or not at all, and verify passes on the caught-up landscape.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditledger.adapters import Ledger
from auditledger.domain.errors import UnknownState
from auditledger.domain.node_state import NodeState

ROOT = Path(__file__).resolve().parents[2]
STATES = 5

WRITER = f"""
import sys, time
sys.path[:0] = {[str(ROOT / p) for p in ("domain", "projections", "adapters")]!r}
from auditledger.adapters import Ledger
url, hold_after, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ledger = Ledger.open(url)
run_id = ledger.begin_run(config={{"writer": prefix}})
print("RUN", run_id, flush=True)
u = 0
while True:
    with ledger.unit_of_work():
        for j in range({STATES}):
            state = ledger.open_state(
                run_id=run_id, token_id=f"{{prefix}}-{{u}}-{{j}}", node_id="n", step_index=0
            )
            for k in range(2):
                ledger.record_call(
                    state, call_type="llm", request={{"u": u, "j": j, "k": k}}, response={{"ok": 1}}
                )
            ledger.complete_state(state)
            if u == hold_after and j == 2:
                print("INSIDE", u, flush=True)
                time.sleep(120)
    print("ACK", u, flush=True)
    u += 1
"""


def run_and_kill(
    url: str, prefix: str, *, hold_after: int, acks_before_kill: int
) -> tuple[str, int]:
    """Starts a writer, kills it; returns its run and the last acknowledged unit (-1 if none)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, str(hold_after), prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    last = -1
    run_id = ""
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "RUN":
                run_id = rest
            elif word == "ACK":
                last = int(rest)
                if hold_after < 0 and last + 1 >= acks_before_kill:
                    time.sleep(random.uniform(0, 0.05))
                    break
            elif word == "INSIDE":
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        rest_of_output, _ = proc.communicate(timeout=30)
    for line in rest_of_output.splitlines():
        if line.startswith("ACK "):
            last = int(line.split()[1])
    return run_id, last


def units_present(ledger: Ledger, run_id: str, prefix: str, upto: int) -> dict[int, int]:
    """For each unit 0..upto: how many of its states exist (each checked whole)."""
    present: dict[int, int] = {}
    for u in range(upto + 1):
        found = 0
        for j in range(STATES):
            state_id = ledger.state_id(run_id=run_id, token_id=f"{prefix}-{u}-{j}", node_id="n")
            try:
                state = ledger.load(NodeState, state_id)
            except UnknownState:
                continue
            assert (state.status, state.call_count) == ("completed", 2)
            found += 1
        present[u] = found
    return present


def check_kills(url: str) -> None:
    outcomes = [
        ("held", run_and_kill(url, "held", hold_after=3, acks_before_kill=0)),
        ("random-1", run_and_kill(url, "random-1", hold_after=-1, acks_before_kill=3)),
        ("random-2", run_and_kill(url, "random-2", hold_after=-1, acks_before_kill=5)),
    ]
    with Ledger.open(url) as ledger:
        for prefix, (run_id, last_ack) in outcomes:
            present = units_present(ledger, run_id, prefix, last_ack + 3)
            assert all(present[u] == STATES for u in range(last_ack + 1)), (prefix, present)
            assert all(n in (0, STATES) for n in present.values()), (prefix, present)
            if prefix == "held":
                assert last_ack == 2
                assert present[3] == 0
        ledger.catch_up()
        report = ledger.verify()
        assert report.passed, [c for c in report.checks if not c.passed]


@pytest.mark.slow
def test_a_writer_killed_inside_a_unit_leaves_whole_units_on_sqlite(tmp_path: Path) -> None:
    check_kills(f"sqlite:///{tmp_path}/ledger")


@pytest.mark.slow
@pytest.mark.postgres
def test_a_writer_killed_inside_a_unit_leaves_whole_units_on_postgresql(postgres_url: str) -> None:
    check_kills(postgres_url)
