"""Merkle tree figures: what the tree adds to sealing, and how fast inclusion proofs come.

    .venv/bin/python bench/merkle.py [--events 1000000] [--seal-events 200000] [--repeat 3]

The store is built fast: a SQLite ledger directory is created by Ledger.open, then raw
events in the shape of the standard workload (per token: StateOpened, 3 CallRecorded with
request/response hashes, StateCompleted; states of ~250-450 bytes) are inserted straight into
`stored_events`, as a recorder would, without the Ledger.

Sealing: the same log of --seal-events events sealed from nothing, interleaved, median of
--repeat each, three ways: chain only as the sealer was before the tree (`ChainOnlyLog`, its
batch body copied here: the baseline issue 14's target names), chain only on today's write
path (`ChainOnlyTodayLog`: rows through one driver executemany, so that the tree's own cost
shows apart from what the chain gained), and as shipped (chain + Merkle tree in the same
transactions). Wall time is what the target judges; the process's CPU time is printed too,
since the machine is shared and the load average (printed at start and end) moves wall time.
Proofs: on the --events store, sealed, `prove(position=...)`-equivalent inclusion proofs for
random sealed positions through one Prover (one connection, tiles cached as `prove` does),
each checked by the stand-alone verifier outside the timing; median of --repeat rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, text

from auditledger.adapters import Ledger
from auditledger.adapters.tamper import merkle_verify
from auditledger.adapters.tamper.chain_format import GENESIS, link, originator_text
from auditledger.adapters.tamper.driver_rows import bound, insert_rows
from auditledger.adapters.tamper.merkle_proofs import Prover
from auditledger.adapters.tamper.raw_log import CHAIN_COLUMNS, Head, RawLog, as_bytes, no_cyclic_gc
from auditledger.adapters.tamper.tables import chain

STAMP = '{"timestamp":{"_type_":"datetime_iso","_data_":"2026-12-06T19:26:34.215706+00:00"},'


def build_store(directory: Path, events: int) -> None:
    """~`events` raw events in the standard workload's shape, straight into stored_events."""
    with Ledger.open(f"sqlite:///{directory}"):
        pass
    db = sqlite3.connect(directory / "events.sqlite3")
    rows = []
    token = 0
    while len(rows) < events:
        state = uuid.uuid4().hex
        rows.append((state, 1, "auditledger:NodeState.StateOpened:v1", _opened(token)))
        for call in range(3):
            rows.append(
                (state, 2 + call, "auditledger:NodeState.CallRecorded:v1", _call(token, call))
            )
        rows.append((state, 5, "auditledger:NodeState.StateCompleted:v1", _done(token)))
        token += 1
    with db:
        db.executemany(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?)",
            rows[:events],
        )
    db.close()


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _opened(token: int) -> bytes:
    return (
        STAMP + '"originator_topic":"auditledger:NodeState:v1","run_id":{"_type_":"uuid_hex",'
        f'"_data_":"{uuid.UUID(int=1).hex}"}},"token_id":"bench-{token}",'
        f'"node_id":"node-{token % 3}",'
        f'"step_index":{token % 3},"attempt":0,"input_hash":"{_digest(token)}"}}'
    ).encode()


def _call(token: int, call: int) -> bytes:
    request, response = _digest(token, call, "q"), _digest(token, call, "a")
    return (
        STAMP + f'"call_id":"{uuid.uuid4()}","call_index":{call},"call_type":"llm",'
        f'"status":"success","request_hash":"{request}","request_ref":"{request}",'
        f'"response_hash":"{response}","response_ref":"{response}","error_json":null,'
        '"latency_ms":12.5,"started_at":null,"summary_json":null}'
    ).encode()


def _done(token: int) -> bytes:
    return (STAMP + f'"output_hash":"{_digest(token, "out")}"}}').encode()


class ChainOnlyLog(RawLog):
    """The sealer before the Merkle tree: the same batch body, chain rows only (the baseline)."""

    def _seal_batch(self, horizon: int, batch: int) -> Head | None:
        with self.events_engine.begin() as conn:
            last = conn.execute(
                select(chain.c.position, chain.c.chain_hash)
                .order_by(chain.c.position.desc())
                .limit(1)
            ).first()
            head = Head(0, GENESIS.hex()) if last is None else Head(last[0], last[1])
            column = self.position_column
            rows = conn.execute(
                text(
                    f"SELECT {column}, topic, originator_id, originator_version, state "
                    f"FROM {self.events_table} WHERE {column} > :after AND {column} <= :until "
                    f"ORDER BY {column} LIMIT :limit"
                ),
                {"after": head.position, "until": horizon, "limit": batch},
            ).all()
            if not rows:
                return head
            now = datetime.now(UTC)
            prev, prev_position = bytes.fromhex(head.chain_hash), head.position
            entries = []
            for position, topic, originator, version, state in rows:
                prev = link(
                    prev, position, topic, originator_text(originator), version, as_bytes(state)
                )
                entries.append(
                    {
                        "position": position,
                        "prev_position": prev_position,
                        "chain_hash": prev.hex(),
                        "sealed_at": now,
                    }
                )
                prev_position = position
            conn.execute(chain.insert(), entries)
        return None


class ChainOnlyTodayLog(RawLog):
    """ChainOnlyLog with today's write path (driver executemany, `sealed_at` bound once): the
    chain's share of the shipped sealer, so that the tree's own cost shows apart."""

    def _seal_batch(self, horizon: int, batch: int) -> Head | None:
        with self.events_engine.begin() as conn:
            last = conn.execute(
                select(chain.c.position, chain.c.chain_hash)
                .order_by(chain.c.position.desc())
                .limit(1)
            ).first()
            head = Head(0, GENESIS.hex()) if last is None else Head(last[0], last[1])
            column = self.position_column
            rows = conn.execute(
                text(
                    f"SELECT {column}, topic, originator_id, originator_version, state "
                    f"FROM {self.events_table} WHERE {column} > :after AND {column} <= :until "
                    f"ORDER BY {column} LIMIT :limit"
                ),
                {"after": head.position, "until": horizon, "limit": batch},
            ).all()
            if not rows:
                return head
            now = bound(conn, chain.c.sealed_at, datetime.now(UTC))
            prev, prev_position = bytes.fromhex(head.chain_hash), head.position
            entries: list[tuple[object, ...]] = []
            for position, topic, originator, version, state in rows:
                prev = link(
                    prev,
                    position,
                    topic,
                    originator if type(originator) is str else originator_text(originator),
                    version,
                    state if type(state) is bytes else as_bytes(state),
                )
                entries.append((position, prev_position, prev.hex(), now))
                prev_position = position
            insert_rows(conn, chain, CHAIN_COLUMNS, entries)
        return None


def unseal(directory: Path) -> None:
    db = sqlite3.connect(directory / "events.sqlite3")
    with db:
        for table in ("chain", "merkle_tiles", "merkle_runs"):
            db.execute(f"DROP TABLE IF EXISTS {table}")
    db.execute("VACUUM")
    db.close()


def seal_all(log: RawLog) -> Head:
    return log.seal(batch=5_000)


SEALERS = (
    ("chain only, the sealer before the tree", ChainOnlyLog),
    ("chain only, today's write path", ChainOnlyTodayLog),
    ("chain + tree (shipped)", RawLog),
)


def seal_times(root: Path, events: int, repeat: int) -> None:
    directory = root / "seal"
    build_store(directory, events)
    url = f"sqlite:///{directory}"
    wall: dict[str, list[float]] = {name: [] for name, _ in SEALERS}
    cpu: dict[str, list[float]] = {name: [] for name, _ in SEALERS}
    for _ in range(repeat):
        for name, cls in SEALERS:
            unseal(directory)
            with cls.open(url) as log:
                started, used = time.perf_counter(), time.process_time()
                seal_all(log)
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - used)
    median = {name: statistics.median(runs) for name, runs in wall.items()}
    median_cpu = {name: statistics.median(runs) for name, runs in cpu.items()}
    (before, _), (today, _), (shipped, _) = SEALERS
    print(
        f"seal from nothing, SQLite: {events:,} events, interleaved, median of {repeat} "
        "(wall; CPU of this process; against the first line)"
    )
    for name, runs in wall.items():
        print(
            f"  {name:40s} {median[name]:5.2f} s {events / median[name]:8,.0f} events/s "
            f"{_added(median[name], median[before])}  CPU {median_cpu[name]:5.2f} s "
            f"{_added(median_cpu[name], median_cpu[before])}  (runs: "
            + ", ".join(f"{t:.2f}" for t in runs)
            + ")"
        )
    print(
        f"  the tree's own cost (chain + tree against chain only today): "
        f"{_added(median[shipped], median[today])} wall, "
        f"{_added(median_cpu[shipped], median_cpu[today])} CPU"
    )
    met = median[shipped] <= 1.15 * median[before]
    print(
        f"  target: chain + tree <= +15% against the sealer before the tree: "
        f"{_added(median[shipped], median[before])} wall, {'met' if met else 'NOT met'}"
    )


def _added(value: float, base: float) -> str:
    return f"{100 * (value / base - 1):+6.1f}%"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min; {os.cpu_count()} CPUs)"


def proof_rate(root: Path, events: int, repeat: int, proofs: int = 20_000) -> None:
    directory = root / "prove"
    started = time.perf_counter()
    build_store(directory, events)
    built = time.perf_counter() - started
    url = f"sqlite:///{directory}"
    with RawLog.open(url) as log:
        started = time.perf_counter()
        head = seal_all(log)
        sealed = time.perf_counter() - started
        rates = []
        for round_ in range(repeat):
            positions = random.Random(round_).choices(range(1, head.position + 1), k=proofs)
            with Prover.over(log) as prover:
                started = time.perf_counter()
                made = [prover.inclusion(position) for position in positions]
                rates.append(proofs / (time.perf_counter() - started))
            assert all(merkle_verify.check(proof.model_dump())[0] for proof in made[:2000])
    print(
        f"inclusion proofs, SQLite: {head.position:,} events (built {built:.1f} s, sealed "
        f"{sealed:.1f} s, {head.position / sealed:,.0f} events/s), {proofs:,} random positions "
        f"a round, one Prover"
    )
    print(
        f"  median {statistics.median(rates):9,.0f} proofs/s  (target >= 5,000; rounds: "
        + ", ".join(f"{r:,.0f}" for r in rates)
        + f"; {len(os.sched_getaffinity(0))} CPUs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seal-events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="auditledger-bench-merkle-"))
    try:
        print(f"load average at start: {load()}")
        with no_cyclic_gc():
            seal_times(root, options.seal_events, options.repeat)
            proof_rate(root, options.events, options.repeat)
        print(f"load average at end: {load()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
