"""Run bundle figures: how long `auditledger verify-bundle` takes on a large run (issue 14.5).

    .venv/bin/python bench/bundle.py [--tokens 10000] [--repeat 3]

The run is bench/chain.py's standard workload (per token one state opened, 3 calls with
payloads, state completed; every 10 tokens an aggregation batch with its own state), recorded
on SQLite in units of work of 10 tokens; then caught up, sealed and exported with
`export --run R --bundle DIR --with-payloads --key-file K` (timed once), and
`verify-bundle DIR --key-file K` is timed --repeat times, each a fresh process, with the
store deleted first. Target: <= 30 s (median) for 10,000 states.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chain import workload  # bench/chain.py, beside this script

from auditledger.adapters import Ledger

AUDITLEDGER = str(Path(sys.executable).parent / "auditledger")


def timed(*args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([AUDITLEDGER, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bundle-bench-"))
    try:
        store = f"sqlite:///{work / 'store'}"
        started = time.perf_counter()
        with Ledger.open(store) as ledger:
            workload(ledger, options.tokens, "bundle")
            ledger.catch_up()
            with ledger.landscape_engine.connect() as conn:
                from sqlalchemy import text

                run = str(conn.execute(text("SELECT run_id FROM runs")).scalar_one())
                states = conn.execute(text("SELECT count(*) FROM node_states")).scalar_one()
        print(f"recorded {states:,} states in {time.perf_counter() - started:.1f} s")
        (work / "key").write_bytes(b"bench secret")
        bundle = work / "bundle"
        export = timed(
            "export", "--run", run, "--bundle", str(bundle), "--with-payloads",
            "--key-file", str(work / "key"), "--store", store,
        )  # fmt: skip
        size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
        events = len((bundle / "events.jsonl").read_text().splitlines())
        print(f"export --bundle: {export:.1f} s, {events:,} events, {size / 1e6:.1f} MB")
        shutil.rmtree(work / "store")
        runs = [
            timed("verify-bundle", str(bundle), "--key-file", str(work / "key"))
            for _ in range(options.repeat)
        ]
        print(
            f"verify-bundle ({states:,} states, no store): median {statistics.median(runs):.1f} s "
            f"of {', '.join(f'{r:.1f}' for r in runs)} (target <= 30 s); "
            f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
