"""`auditledger follow` killed with SIGKILL at random moments while writers append.

After a restart the landscape equals a fresh rebuild, and (SQLite, whose positions have no
gaps) the chunks the followers report committing never overlap: no event applied twice.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

from auditledger.adapters import Ledger
from tests.support.cli_runner import AUDITLEDGER

APPLIED = re.compile(r"applied (\d+) events; (?:landscape at )?position (\d+)")


def keep_writing(url: str, stop: threading.Event) -> None:
    with Ledger.open(url) as ledger:
        while not stop.is_set():
            run_id = ledger.begin_run(config={"t": time.time()})
            for n in range(3):
                state = ledger.open_state(
                    run_id=run_id, token_id=f"{run_id}/{n}", node_id="llm", step_index=0
                )
                ledger.record_call(state, call_type="llm", request={"n": n}, response={"n": n})
                ledger.complete_state(state, output={"n": n})
            ledger.complete_run(run_id)


def started(out: Path) -> None:
    """Wait until the follower has imported everything and opened the store."""
    deadline = time.monotonic() + 60
    while "following" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture
def url(shared_url: str) -> str:
    return shared_url


@pytest.mark.slow
def test_a_follower_killed_at_random_moments_resumes_exactly_once(url: str, tmp_path: Path) -> None:
    with Ledger.open(url) as ledger:
        ledger.begin_run(config={"first": True})
    stop = threading.Event()
    writer = threading.Thread(target=keep_writing, args=(url, stop))
    writer.start()
    chance = random.Random(os.getpid())
    outputs: list[Path] = []
    try:
        for round_ in range(4):
            out = tmp_path / f"follow-{round_}.out"
            outputs.append(out)
            with out.open("w") as sink:
                follower = subprocess.Popen(
                    [AUDITLEDGER, "follow", "--store", url, "--poll", "0.05"],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
                )
                started(out)
                time.sleep(chance.uniform(0.05, 1.5))
                follower.send_signal(signal.SIGKILL)
                follower.wait(timeout=30)
    finally:
        stop.set()
        writer.join(timeout=60)
    final = subprocess.run(
        [AUDITLEDGER, "catch-up", "--store", url], capture_output=True, text=True, timeout=120
    )
    assert final.returncode == 0, final.stderr

    reported = [APPLIED.findall(p.read_text()) for p in outputs]
    assert any(reported), "no follower committed anything before it was killed"
    with Ledger.open(url) as ledger:
        last = ledger.app.recorder.max_notification_id()
        assert ledger.landscape_position() == last
        report = ledger.verify()
        assert report.passed, [c for c in report.checks if not c.passed]
    with Ledger.open(url, landscape=f"sqlite:///{tmp_path}/fresh.sqlite3") as fresh:
        fresh.rebuild()
        assert fresh.landscape_position() == last

    if url.startswith("sqlite"):
        chunks = [(int(p) - int(n), int(p)) for lines in reported for n, p in lines]
        chunks += [(int(p) - int(n), int(p)) for n, p in APPLIED.findall(final.stdout)]
        chunks.sort()
        for (_, end), (start, _) in pairwise(chunks):
            assert start >= end, f"chunks overlap: an event was applied twice ({chunks})"
