"""Rebuild figures: events/s, wall time and peak RSS of `rebuild`, beside a raw insert floor.

    .venv/bin/python bench/rebuild.py [--events 1000000] [--backend sqlite|postgres|both]

The log is the standard workload of issue 5, scaled to --events: 1 run, 3 nodes; per token
one state opened, 3 calls, state completed; every 10 tokens an aggregation batch of 10
members, linked to an aggregation state and completed (65 events per 10 tokens). It is
written straight through the domain aggregates and eventsourcing (payload bytes are not
stored: a rebuild never reads them), so building the log is not what is measured.

Each phase runs in its own process, so peak RSS is the phase's own:
- rebuild: `ledger.rebuild()` (shadow build, chunk by chunk, then the atomic swap); RSS is
  also sampled at 10%, 50% and 100% of the log to show it stays flat;
- floor:   the rebuilt rows, read back in chunks, inserted with plain executemany into
  empty tables of the same schema, one commit per chunk of 2,000 rows; only the inserts
  and commits are timed. Both rates are events of the log per second of wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any
from uuid import uuid4

PG_SERVER = os.environ.get("AUDITLEDGER_PG_URL", "postgresql://postgres@127.0.0.1:5432")
CHUNK = 2000


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def build_log(url: str, events: int) -> int:
    from auditledger.adapters import Ledger
    from auditledger.domain.batch import Batch
    from auditledger.domain.call_parent import CallFacts
    from auditledger.domain.node_state import NodeState
    from auditledger.domain.run import Run

    tokens = max(10, events * 10 // 65)
    with Ledger.open(url) as ledger:
        run = Run.start(run_id=uuid4(), config_json="{}", config_hash=digest("config"))
        ledger.app.save(run)
        for start in range(0, tokens, 10):
            pending: list[Any] = []
            members = []
            for token in range(start, start + 10):
                state = NodeState.open(
                    run_id=run.id,
                    token_id=f"t{token}",
                    node_id=f"node-{token % 3}",
                    step_index=token % 3,
                    attempt=0,
                    input_hash=digest(f"in{token}"),
                )
                for call in range(3):
                    state.record_call(
                        CallFacts(
                            call_type="llm",
                            status="success",
                            request_hash=digest(f"q{token}/{call}"),
                            response_hash=digest(f"a{token}/{call}"),
                            latency_ms=12.5,
                        )
                    )
                state.complete(digest(f"out{token}"))
                pending.append(state)
                members.append(f"t{token}")
            batch = Batch.create(
                batch_id=uuid4(), run_id=run.id, aggregation_node_id="aggregate", attempt=0
            )
            for member in members:
                batch.add_member(member)
            aggregation = NodeState.open(
                run_id=run.id,
                token_id=f"batch-{start}",
                node_id="aggregate",
                step_index=3,
                attempt=0,
                input_hash=None,
            )
            batch.link(aggregation.id, run_id=run.id, node_id="aggregate", state_status="open")
            aggregation.complete(None)
            batch.complete()
            ledger.app.save(*pending, aggregation, batch)
        run.complete("completed")
        ledger.app.save(run)
        return int(ledger.app.recorder.max_notification_id() or 0)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_rebuild(url: str) -> dict[str, Any]:
    from auditledger.adapters import Ledger

    with Ledger.open(url) as ledger:
        last = ledger.app.recorder.max_notification_id() or 0
        marks = {int(last * f): f"{int(f * 100)}%" for f in (0.1, 0.5)}
        samples: dict[str, float] = {}

        def sample(_count: int, position: int) -> None:
            for mark, label in marks.items():
                if position >= mark and label not in samples:
                    samples[label] = round(rss_mb(), 1)

        ledger.landscape_position()
        start = time.perf_counter()
        result = ledger.rebuild(chunk_size=CHUNK, progress=sample)
        seconds = time.perf_counter() - start
        samples["100%"] = round(rss_mb(), 1)
    return {
        "events": result.events,
        "seconds": seconds,
        "rows": result.rows,
        "rss_mb": samples,
        "peak_rss_mb": round(peak_mb(), 1),
    }


def phase_floor(url: str) -> dict[str, Any]:
    from sqlalchemy import insert, select, text

    from auditledger.adapters import Ledger
    from auditledger.projections.schema import Landscape

    with Ledger.open(url) as ledger:
        ledger.landscape_position()
        engine = ledger.stores.landscape_engine
        live = Landscape.live()
        with engine.connect() as reader, engine.connect() as writer:
            if engine.dialect.name == "postgresql":
                writer.execute(text("DROP SCHEMA IF EXISTS bench_floor CASCADE"))
                writer.execute(text("CREATE SCHEMA bench_floor"))
            else:
                writer.exec_driver_sql("ATTACH DATABASE '' AS bench_floor")
            floor = Landscape.shadow("bench_floor")
            floor.create(writer)
            writer.commit()
            seconds = 0.0
            rows = 0
            for table, target in zip(live.ordered, floor.ordered, strict=True):
                result = reader.execution_options(stream_results=True).execute(select(table))
                while batch := [dict(r._mapping) for r in result.fetchmany(CHUNK)]:
                    start = time.perf_counter()
                    writer.execute(insert(target), batch)
                    writer.commit()
                    seconds += time.perf_counter() - start
                    rows += len(batch)
            if engine.dialect.name == "postgresql":
                writer.execute(text("DROP SCHEMA bench_floor CASCADE"))
                writer.commit()
        return {"rows": rows, "seconds": seconds, "peak_rss_mb": round(peak_mb(), 1)}


def run_phase(name: str, url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--url", url],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def bench(backend: str, events: int) -> None:
    import psycopg

    directory = tempfile.mkdtemp(prefix="auditledger-rebuild-")
    dbname = f"auditledger_bench_{os.getpid()}"
    if backend == "sqlite":
        url = f"sqlite:///{directory}/ledger"
    else:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        url = f"{PG_SERVER}/{dbname}"
    try:
        start = time.perf_counter()
        logged = build_log(url, events)
        built = time.perf_counter() - start
        rebuilt = run_phase("rebuild", url)
        floor = run_phase("floor", url)
        rate = rebuilt["events"] / rebuilt["seconds"]
        floor_rate = rebuilt["events"] / floor["seconds"]
        print(f"\n## {backend}: {logged:,} events (log written in {built:.1f} s)")
        print(
            f"rebuild: {rebuilt['seconds']:.1f} s wall, {rate:,.0f} events/s, "
            f"peak RSS {rebuilt['peak_rss_mb']} MB, RSS at 10/50/100%: {rebuilt['rss_mb']}"
        )
        print(f"rows: {rebuilt['rows']}")
        print(
            f"raw floor: {floor['rows']:,} rows by executemany in {floor['seconds']:.1f} s "
            f"= {floor_rate:,.0f} events/s; rebuild is {100 * rate / floor_rate:.0f}% of it"
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if backend == "postgres":
            with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--phase", choices=["rebuild", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase = phase_rebuild if args.phase == "rebuild" else phase_floor
        print(json.dumps(phase(args.url)))
        return
    for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
        bench(backend, args.events)


if __name__ == "__main__":
    main()
