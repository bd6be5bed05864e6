"""Tamper evidence figures: what chaining costs the writers, and how fast a log verifies.

    .venv/bin/python bench/chain.py [--tokens 2000] [--verify-tokens 20000] [--repeat 3]

The standard workload (issue 5): 1 run, 3 nodes; per token one state opened, 3 calls
(request ~300 B, response ~600 B of unique JSON, payloads stored), state completed; every
10 tokens an aggregation batch of 10 members, linked to a state and completed. Recorded on
SQLite in units of work of 10 tokens (one transaction each).

Append overhead, three ways, each repeated and interleaved (median wall time):
- plain:   no chain (the baseline);
- sealed:  a separate `auditledger seal --every 0.2` process, already running, follows the
           log while the workload runs (its lag after the last commit is printed apart);
- inline:  a prototype recorder that computes the chain inside each write transaction
           (the alternative design; not shipped).
Verify rate: `verify_chain` over a sealed log of the same workload with --verify-tokens
tokens, payload bytes re-hashed, best of --repeat; as shipped (segments walked by one process
per CPU) and with workers=1 (the single walk), whose reports must be equal.
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
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditledger.adapters import Ledger
from auditledger.adapters.storage.engines import build_engine
from auditledger.adapters.storage.settings import StoreSettings
from auditledger.adapters.storage.sqlite_recorder import LedgerSQLiteRecorder
from auditledger.adapters.tamper.chain_format import GENESIS, link, originator_text
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.adapters.tamper.tables import CHAIN_TABLES, metadata
from auditledger.adapters.tamper.verifier import verify_chain

AUDITLEDGER = str(Path(sys.executable).parent / "auditledger")


def workload(ledger: Ledger, tokens: int, tag: str) -> int:
    """Record the standard workload; returns the number of audit facts."""
    facts = 0
    run = ledger.begin_run({"bench": tag})
    unit = getattr(ledger, "unit_of_work", None)
    for start in range(0, tokens, 10):
        context = unit() if unit is not None else _nothing()
        with context:
            states = []
            for token in range(start, min(start + 10, tokens)):
                node = f"node-{token % 3}"
                state = ledger.open_state(
                    run_id=run,
                    token_id=f"{tag}-{token}",
                    node_id=node,
                    step_index=token % 3,
                    input={"token": token, "text": "x" * 80},
                )
                for call in range(3):
                    ledger.record_call(
                        state,
                        call_type="llm",
                        request={"token": token, "call": call, "prompt": "p" * 260},
                        response={"token": token, "call": call, "answer": "a" * 560},
                        latency_ms=12.5,
                    )
                ledger.complete_state(state, {"token": token})
                states.append((f"{tag}-{token}", state))
                facts += 4
            if len(states) == 10:
                aggregate = ledger.open_state(
                    run_id=run, token_id=f"{tag}-batch-{start}", node_id="aggregate", step_index=3
                )
                batch = ledger.create_batch(run, "aggregate")
                for token_id, _ in states:
                    ledger.add_batch_member(batch, token_id)
                ledger.link_batch(batch, aggregate)
                ledger.complete_batch(batch)
                ledger.complete_state(aggregate)
                facts += 1
    ledger.complete_run(run)
    return facts


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


class InlineChainRecorder(LedgerSQLiteRecorder):
    """Prototype of the rejected design: the chain computed inside the write transaction."""

    def _insert_events(self, c: Any, stored_events: Sequence[Any], **kwargs: Any) -> Any:
        ids = super()._insert_events(c, stored_events, **kwargs)
        c.execute("SELECT position, chain_hash FROM chain ORDER BY position DESC LIMIT 1")
        row = c.fetchone()
        prev, prev_position = (GENESIS, 0) if row is None else (bytes.fromhex(row[1]), row[0])
        now = datetime.now(UTC).isoformat()
        rows = []
        for position, event in zip(ids or [], stored_events, strict=True):
            prev = link(
                prev,
                position,
                event.topic,
                originator_text(event.originator_id),
                event.originator_version,
                event.state,
            )
            rows.append((position, prev_position, prev.hex(), now))
            prev_position = position
        c.executemany("INSERT INTO chain VALUES (?, ?, ?, ?)", rows)
        return ids


_ledger_env = StoreSettings.event_store_env


def _inline_env(settings: StoreSettings) -> dict[str, str]:
    env = _ledger_env(settings)
    env["APPLICATION_RECORDER_TOPIC"] = f"{__name__}:InlineChainRecorder"
    return env


def record(directory: Path, tokens: int, mode: str) -> tuple[float, float, int, int]:
    """Writer wall seconds, seconds until all is sealed, facts and events, for one `mode`."""
    url = f"sqlite:///{directory}"
    if mode == "inline":
        directory.mkdir(parents=True)
        engine = build_engine(f"sqlite:///{directory / 'events.sqlite3'}")
        metadata.create_all(engine, tables=list(CHAIN_TABLES))
        engine.dispose()
        StoreSettings.event_store_env = _inline_env  # type: ignore[method-assign]
    sealer = None
    try:
        with Ledger.open(url) as ledger:
            if mode == "sealed":  # a follower already running, as it would be in production
                sealer = subprocess.Popen(
                    [AUDITLEDGER, "seal", "--store", url, "--every", "0.2"],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert sealer.stdout is not None
                sealer.stdout.readline()
            started = time.perf_counter()
            facts = workload(ledger, tokens, mode)
            written = time.perf_counter() - started
        with RawLog.open(url) as source:
            events = sum(len(batch) for batch in source.events())
            while mode == "sealed" and source.sealed_head().position < events:
                time.sleep(0.01)
            sealed = time.perf_counter() - started
            if mode != "plain":
                report = verify_chain(source)
                assert report.ok and report.unsealed == 0, report
    finally:
        StoreSettings.event_store_env = _ledger_env  # type: ignore[method-assign]
        if sealer is not None:
            sealer.terminate()
            sealer.wait()
    return written, sealed, facts, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--verify-tokens", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    if os.environ.get("PYTHONHASHSEED") is None:
        os.environ["PYTHONHASHSEED"] = "0"
    root = Path(tempfile.mkdtemp(prefix="auditledger-bench-chain-"))
    try:
        overhead(root, options.tokens, options.repeat)
        verify_rate(root, options.verify_tokens, options.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def overhead(root: Path, tokens: int, repeat: int) -> None:
    modes = ("plain", "sealed", "inline")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    lags: dict[str, list[float]] = {mode: [] for mode in modes}
    facts = events = 0
    for attempt in range(repeat):
        for mode in modes:
            written, sealed, facts, events = record(root / f"{mode}-{attempt}", tokens, mode)
            times[mode].append(written)
            lags[mode].append(sealed - written)
    base = statistics.median(times["plain"])
    print(f"unit-of-work workload, SQLite: {tokens} tokens, {facts} facts, {events} events")
    for mode in modes:
        wall = statistics.median(times[mode])
        sealed = {  # only the follower's lag is measured; inline seals in the commit
            "plain": "not sealed",
            "inline": "sealed at commit",
            "sealed": f"sealed {statistics.median(lags[mode]):.2f} s after the last commit",
        }[mode]
        print(
            f"  {mode:7s} writer median {wall:6.2f} s  {facts / wall:8,.0f} facts/s  "
            f"overhead {100 * (wall / base - 1):+6.1f}%  {sealed}  (runs: "
            + ", ".join(f"{t:.2f}" for t in times[mode])
            + ")"
        )


def verify_rate(root: Path, tokens: int, repeat: int) -> None:
    directory = root / "verify"
    url = f"sqlite:///{directory}"
    with Ledger.open(url) as ledger:
        workload(ledger, tokens, "verify")
    with RawLog.open(url) as source:
        started = time.perf_counter()
        head = source.seal()
        sealing = time.perf_counter() - started
        best = single = float("inf")
        report = None
        for _ in range(repeat):
            started = time.perf_counter()
            report = verify_chain(source)
            best = min(best, time.perf_counter() - started)
            started = time.perf_counter()
            alone = verify_chain(source, workers=1)
            single = min(single, time.perf_counter() - started)
            assert alone == report, (alone, report)
    assert report is not None and report.ok, report
    print(f"verify, SQLite: {report.events_checked:,} events, {report.payloads_checked:,} payloads")
    print(f"  seal (first time, whole log) {sealing:6.2f} s  {head.position / sealing:10,.0f} ev/s")
    print(
        f"  verify (chain + payload bytes) {best:6.2f} s  "
        f"{report.events_checked / best:10,.0f} events/s  (target >= 100,000; "
        f"{len(os.sched_getaffinity(0))} CPUs)"
    )
    print(
        f"  verify, one process            {single:6.2f} s  "
        f"{report.events_checked / single:10,.0f} events/s"
    )


if __name__ == "__main__":
    main()
