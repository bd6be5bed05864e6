"""The standard recording workload, against the raw floor of the same events, measured in one run.

Workload: 1 run, 3 nodes; N tokens (default 2,000); per token one state, K=3 calls (request
~300 B, response ~600 B, unique JSON, payloads stored), state completed; every 10 tokens one
batch of 10 members, linked to the last token's state, completed. Audit facts = states +
calls + batches (8,200 at the defaults).

Modes: `commit` (one commit per command), `unit` (one unit of work per 10 tokens and their
batch), `group` (group commit, THREADS threads sharing one Ledger). Backends: `sqlite` (a
fresh directory), `postgres` (a fresh database, created and dropped here), `memory`.
The raw floor: the same stored events appended through eventsourcing's recorder into a fresh
store, one transaction per 100 aggregates, no payloads, no checks.

    .venv/bin/python bench/record.py                       # everything, with the targets
    .venv/bin/python bench/record.py --backends sqlite --modes unit --tokens 500
    .venv/bin/python bench/record.py --writers 1,2,4,8     # PostgreSQL writers, 2,000 tokens each
    .venv/bin/python bench/record.py --writers 1,4 --writer-tokens 0   # 2,000 tokens shared out
    .venv/bin/python bench/record.py --json ...            # one JSON object per measurement

Importable (the hash-chain bench reuses it): measure(), raw_floor(), writers().
Each measurement runs in a fresh process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for portion in ("domain", "projections", "adapters"):
    if str(ROOT / portion) not in sys.path:
        sys.path.insert(0, str(ROOT / portion))

PG_SERVER = os.environ.get("AUDITLEDGER_PG_URL", "postgresql://postgres@127.0.0.1:5432")
NODES = ("extract", "classify", "summarise")
CALLS = 3
GROUP = 10
THREADS = 4

Setup = Callable[[Any], None]


# Stores


@contextmanager
def fresh_store(backend: str) -> Iterator[str]:
    """A store URL nobody has used, removed afterwards."""
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        directory = tempfile.mkdtemp(prefix="auditledger-bench-")
        try:
            yield f"sqlite:///{directory}/ledger"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    elif backend == "postgres":
        import psycopg

        name = f"auditledger_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{PG_SERVER}/{name}"
        finally:
            with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        raise SystemExit(f"unknown backend {backend!r}: sqlite, postgres, memory")


def store_sizes(url: str) -> tuple[int | None, int | None]:
    """(event store bytes, payload store bytes); None where it has no size (memory).

    SQLite keeps the payload table in the events' file: its pages are counted as payloads
    (dbstat), the rest of the directory's files as the event store."""
    if url.startswith("sqlite"):
        import sqlite3

        directory = Path(url[len("sqlite:///") :])
        files = sum(p.stat().st_size for p in directory.glob("*.sqlite3*"))
        files -= sum(p.stat().st_size for p in directory.glob("landscape.sqlite3*"))
        with sqlite3.connect(directory / "events.sqlite3") as lite:
            row = lite.execute(
                "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = 'payloads' "
                "OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'payloads')"
            ).fetchone()
        lite.close()
        return files - int(row[0]), int(row[0])
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url) as conn:
            total = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            payloads = conn.execute("SELECT pg_total_relation_size('payloads')").fetchone()
        assert total is not None and payloads is not None
        return int(total[0]) - int(payloads[0]), int(payloads[0])
    return None, None


# The workload


def node_of(token: int) -> str:
    """The node token `token` is recorded at: round the nodes, the last of each ten at the
    aggregation node (its state is the one the group's batch links to)."""
    return NODES[token % len(NODES)] if token % GROUP != GROUP - 1 else NODES[-1]


def record_group(
    ledger: Any, run_id: str, group: int, latencies: list[float], *, prefix: str = ""
) -> int:
    """Ten tokens and their batch; returns the audit facts recorded (41)."""
    facts = 0
    last_state = ""
    states = []
    for t in range(group * GROUP, (group + 1) * GROUP):
        token = f"{prefix}tok-{t}"
        node = node_of(t)
        state = ledger.open_state(run_id=run_id, token_id=token, node_id=node, step_index=0)
        facts += 1
        for k in range(CALLS):
            request = {"model": "bench", "token": token, "k": k, "prompt": "p" * 240}
            response = {"token": token, "k": k, "choices": [{"text": "r" * 540}]}
            started = time.perf_counter()
            ledger.record_call(
                state, call_type="llm", request=request, response=response, latency_ms=12.5
            )
            latencies.append(time.perf_counter() - started)
            facts += 1
        states.append(state)
        last_state = state
    batch = ledger.create_batch(run_id, NODES[-1])
    for t in range(group * GROUP, (group + 1) * GROUP):
        ledger.add_batch_member(batch, f"{prefix}tok-{t}")
    ledger.link_batch(batch, last_state)
    ledger.complete_batch(batch)
    facts += 1
    for state in states:
        ledger.complete_state(state, output={"label": "ok"} if state == last_state else None)
    return facts


def run_workload(
    ledger: Any, mode: str, tokens: int, *, run_id: str | None = None, prefix: str = ""
) -> tuple[int, list[float]]:
    run_id = run_id or ledger.begin_run(config={"bench": "record", "tokens": tokens})
    groups = range(tokens // GROUP)
    latencies: list[float] = []
    if mode == "commit":
        facts = sum(record_group(ledger, run_id, g, latencies, prefix=prefix) for g in groups)
    elif mode == "unit":
        facts = 0
        for g in groups:
            with ledger.unit_of_work():
                facts += record_group(ledger, run_id, g, latencies, prefix=prefix)
    elif mode == "group":
        counts = [0] * THREADS
        per_thread: list[list[float]] = [[] for _ in range(THREADS)]
        failures: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                for g in groups[i::THREADS]:
                    counts[i] += record_group(ledger, run_id, g, per_thread[i], prefix=prefix)
            except BaseException as error:  # a figure from partial counts would be wrong
                failures.append(error)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        facts = sum(counts)
        latencies = [x for part in per_thread for x in part]
    else:
        raise SystemExit(f"unknown mode {mode!r}: commit, unit, group")
    return facts, latencies


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(
    backend: str, mode: str, tokens: int = 2000, *, setup: Setup | None = None, floor: bool = True
) -> dict[str, Any]:
    """One measurement in this process: the workload, then the raw floor of its events."""
    from auditledger.adapters import Ledger

    with fresh_store(backend) as url:
        ledger = Ledger.open(url, group_commit=(mode == "group"))
        try:
            if setup is not None:
                setup(ledger)
            before = ledger.app.recorder.max_notification_id() or 0
            started = time.perf_counter()
            facts, latencies = run_workload(ledger, mode, tokens)
            wall = time.perf_counter() - started
            events = (ledger.app.recorder.max_notification_id() or 0) - before
            rss = peak_rss_mb()
            db_bytes, payload_bytes = store_sizes(url)
            stored = _all_stored_events(ledger) if floor else []
        finally:
            ledger.close()
    latencies.sort()
    figures: dict[str, Any] = {
        "backend": backend,
        "mode": mode,
        "tokens": tokens,
        "facts": facts,
        "events": events,
        "wall_s": wall,
        "facts_per_s": facts / wall,
        "events_per_s": events / wall,
        "call_p50_ms": 1000 * statistics.median(latencies),
        "call_p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "db_bytes": db_bytes,
        "payload_bytes": payload_bytes,
        "peak_rss_mb": rss,
    }
    if floor:
        raw = raw_floor(backend, stored)
        figures["raw_events_per_s"] = raw
        figures["raw_facts_per_s"] = raw * facts / events
        figures["of_raw"] = figures["events_per_s"] / raw
        mapped = raw_floor(backend, stored, mapped=True)
        figures["mapped_events_per_s"] = mapped
        figures["of_mapped"] = figures["events_per_s"] / mapped
        ceiling = domain_ceiling(tokens)["ceiling_events_per_s"]
        figures["ceiling_events_per_s"] = ceiling
        figures["ceiling_of_raw"] = ceiling / raw
        figures["of_ceiling"] = figures["events_per_s"] / ceiling
    return figures


def _all_stored_events(ledger: Any) -> list[Any]:
    from eventsourcing.persistence import StoredEvent

    recorder = ledger.app.recorder
    out: list[Any] = []
    start = 1
    while True:
        notes = recorder.select_notifications(start=start, limit=5000)
        if not notes:
            return out
        out.extend(
            StoredEvent(n.originator_id, n.originator_version, n.topic, n.state) for n in notes
        )
        start = notes[-1].id + 1


def raw_floor(
    backend: str, stored: list[Any], aggregates_per_commit: int = 100, *, mapped: bool = False
) -> float:
    """Events/s appending `stored` through the library's recorder, 100 aggregates a commit.

    mapped=True: starting from domain events, so the library's mapper (JSON transcoding)
    is timed too, as every real write pays it."""
    from auditledger.adapters.storage.event_store import LedgerApplication
    from auditledger.adapters.storage.settings import StoreSettings

    by_aggregate: dict[Any, list[Any]] = {}
    for event in stored:
        by_aggregate.setdefault(event.originator_id, []).append(event)
    ids = list(by_aggregate)
    chunks = [
        [e for i in ids[n : n + aggregates_per_commit] for e in by_aggregate[i]]
        for n in range(0, len(ids), aggregates_per_commit)
    ]
    with fresh_store(backend) as url:
        settings = StoreSettings.parse(url)
        if settings.directory is not None:
            settings.directory.mkdir(parents=True)
        env = settings.event_store_env()
        env.pop("APPLICATION_RECORDER_TOPIC", None)  # the library's own recorder
        app = LedgerApplication(env=env)
        try:
            if mapped:
                to_domain, to_stored = app.mapper.to_domain_event, app.mapper.to_stored_event
                domain = [[to_domain(e) for e in chunk] for chunk in chunks]
                started = time.perf_counter()
                for events in domain:
                    app.recorder.insert_events([to_stored(e) for e in events])
            else:
                started = time.perf_counter()
                for chunk in chunks:
                    app.recorder.insert_events(chunk)
            wall = time.perf_counter() - started
        finally:
            app.close()
    return len(stored) / wall


def domain_ceiling(tokens: int = 2000) -> dict[str, float]:
    """Events/s the domain alone makes of the workload: the aggregates' commands (the
    library's Aggregate and event classes, our checks) and the mapper turning each event
    into a stored event, in memory, with the payload hashes given (no canonical JSON, no
    hashing, no store, no unit of work). No recording path can be faster than this."""
    from auditledger.adapters.storage.event_store import LedgerApplication
    from auditledger.domain.batch import Batch
    from auditledger.domain.call_parent import CallFacts
    from auditledger.domain.node_state import NodeState
    from auditledger.domain.run import Run

    app = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    request, response = "a" * 64, "b" * 64
    started = time.perf_counter()
    run = Run.start(run_id=uuid.uuid4(), config_json="{}", config_hash=request)
    events = list(run.collect_events())
    for group in range(tokens // GROUP):
        states = []
        for t in range(group * GROUP, (group + 1) * GROUP):
            node = node_of(t)
            state = NodeState.open(
                run_id=run.id,
                token_id=f"tok-{t}",
                node_id=node,
                step_index=0,
                attempt=0,
                input_hash=None,
            )
            for _ in range(CALLS):
                state.record_call(
                    CallFacts(
                        call_type="llm",
                        status="success",
                        request_hash=request,
                        response_hash=response,
                        latency_ms=12.5,
                    )
                )
            states.append(state)
        batch = Batch.create(
            batch_id=uuid.uuid4(), run_id=run.id, aggregation_node_id=NODES[-1], attempt=0
        )
        for t in range(group * GROUP, (group + 1) * GROUP):
            batch.add_member(f"tok-{t}")
        last = states[-1]
        batch.link(last.id, run_id=run.id, node_id=last.node_id, state_status=last.status)
        batch.complete()
        for state in states:
            state.complete(None)
        events.extend(batch.collect_events())
        for state in states:
            events.extend(state.collect_events())
    domain = time.perf_counter() - started
    to_stored = app.mapper.to_stored_event
    started = time.perf_counter()
    for event in events:
        to_stored(event)
    mapper = time.perf_counter() - started
    app.close()
    return {
        "events": len(events),
        "domain_events_per_s": len(events) / domain,
        "ceiling_events_per_s": len(events) / (domain + mapper),
    }


# PostgreSQL writer processes


def _writer_process(
    url: str, run_id: str, mode: str, tokens: int, index: int, gate: Any, out: Any
) -> None:
    from auditledger.adapters import Ledger

    try:
        with Ledger.open(url, group_commit=(mode == "group")) as ledger:
            gate.wait()
            started = time.perf_counter()
            facts, _ = run_workload(ledger, mode, tokens, run_id=run_id, prefix=f"w{index}-")
            out.put((facts, started, time.perf_counter()))
    except BaseException as error:
        gate.abort()
        out.put(f"writer {index}: {type(error).__name__}: {error}")


def writers(
    counts: list[int], mode: str = "unit", tokens: int = 2000, *, each: bool = True
) -> list[dict[str, Any]]:
    """Aggregate facts/s of W writer processes on one PostgreSQL database, W in counts.

    each=True: every writer records `tokens` tokens (many pipelines, each its own workload:
    the aggregate runs long enough that process start and warm-up do not decide it);
    each=False: `tokens` shared out between the writers."""
    from auditledger.adapters import Ledger

    context = multiprocessing.get_context("spawn")
    results = []
    for count in counts:
        with fresh_store("postgres") as url:
            with Ledger.open(url) as ledger:
                run_id = ledger.begin_run(config={"bench": "writers", "count": count})
            gate = context.Barrier(count)
            out = context.Queue()
            share = tokens if each else max(GROUP, tokens // count // GROUP * GROUP)
            procs = [
                context.Process(
                    target=_writer_process, args=(url, run_id, mode, share, i, gate, out)
                )
                for i in range(count)
            ]
            for proc in procs:
                proc.start()
            done = [out.get(timeout=900) for _ in procs]
            for proc in procs:
                proc.join()
            failed = [d for d in done if isinstance(d, str)]
            if failed:
                raise SystemExit("; ".join(failed))
        facts = sum(d[0] for d in done)
        wall = max(d[2] for d in done) - min(d[1] for d in done)
        results.append(
            {
                "writers": count,
                "mode": mode,
                "facts": facts,
                "wall_s": wall,
                "facts_per_s": facts / wall,
            }
        )
    return results


# Running and printing


def _child(args: list[str], queue: Any) -> None:
    backend, mode, tokens = args[0], args[1], int(args[2])
    queue.put(measure(backend, mode, tokens))


def measure_in_child(backend: str, mode: str, tokens: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    proc = context.Process(target=_child, args=([backend, mode, str(tokens)], queue))
    proc.start()
    figures: dict[str, Any] = queue.get(timeout=1800)
    proc.join()
    return figures


def measure_median(backend: str, mode: str, tokens: int, repeat: int) -> dict[str, Any]:
    """The measurement `repeat` times, each in a fresh process and store; the run with the
    median facts/s, carrying every run's facts/s in `samples` (a 2-core machine shared with
    others moves single figures by up to 1.5x)."""
    runs = sorted(
        (measure_in_child(backend, mode, tokens) for _ in range(max(1, repeat))),
        key=lambda r: r["facts_per_s"],
    )
    median = dict(runs[len(runs) // 2])
    median["samples"] = [r["facts_per_s"] for r in runs]
    return median


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'backend':9} {'mode':7} {'wall s':>7} {'facts/s':>8} {'events/s':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'db MB':>6} {'pay MB':>6} {'RSS MB':>6} "
        f"{'raw ev/s':>9} {'of raw':>6} {'+map ev/s':>9} {'of it':>6}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['backend']:9} {r['mode']:7} {r['wall_s']:7.2f} {r['facts_per_s']:8.0f} "
            f"{r['events_per_s']:9.0f} {r['call_p50_ms']:7.2f} {r['call_p99_ms']:7.2f} "
            f"{_mb(r['db_bytes']):>6} {_mb(r['payload_bytes']):>6} {r['peak_rss_mb']:6.0f} "
            f"{r.get('raw_events_per_s', 0):9.0f} {r.get('of_raw', 0):6.0%} "
            f"{r.get('mapped_events_per_s', 0):9.0f} {r.get('of_mapped', 0):6.0%}"
        )
    if any(len(r.get("samples", ())) > 1 for r in rows):
        print("(each row: the median of its runs; facts/s of every run)")
        for r in rows:
            runs = " / ".join(f"{x:,.0f}" for x in r["samples"])
            print(f"  {r['backend']:9} {r['mode']:7} {runs}")


def print_targets(rows: list[dict[str, Any]], scale: list[dict[str, Any]]) -> None:
    def find(backend: str, mode: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["backend"] == backend and r["mode"] == mode), None)

    checks: list[tuple[str, str, bool | None]] = []

    def target(name: str, shown: str, ok: bool | None) -> None:  # ok=None: a note
        checks.append((name, shown, ok))

    unit = find("sqlite", "unit")
    if unit:
        target(
            "unit of work, SQLite, of the raw recorder rate >= 40%",
            f"{unit['of_raw']:.0%}",
            unit["of_raw"] >= 0.40,
        )
        target(
            "  the same, against the floor that includes the library's mapper",
            f"{unit['of_mapped']:.0%}",
            unit["of_mapped"] >= 0.40,
        )
        target(
            "  (why) the domain alone (aggregates + mapper, no payloads, no store) makes "
            f"{unit['ceiling_events_per_s']:,.0f} events/s, of the raw rate",
            f"{unit['ceiling_of_raw']:.0%}",
            None,
        )
        target("  the unit of work, of that domain-only ceiling", f"{unit['of_ceiling']:.0%}", None)
        fps = unit["facts_per_s"]
        target("unit of work, SQLite >= 8,000 facts/s", f"{fps:.0f}", fps >= 8000)
    commit = find("sqlite", "commit")
    if commit:
        fps, p99 = commit["facts_per_s"], commit["call_p99_ms"]
        target(
            "one commit per command, SQLite, payloads on >= 1,000 facts/s",
            f"{fps:.0f}",
            fps >= 1000,
        )
        target("record_call p99 < 5 ms, SQLite, one commit per command", f"{p99:.2f} ms", p99 < 5)
    pg = find("postgres", "unit")
    if pg:
        fps = pg["facts_per_s"]
        target("unit of work, PostgreSQL, one writer >= 3,000 facts/s", f"{fps:.0f}", fps >= 3000)
    by_count = {s["writers"]: s["facts_per_s"] for s in scale}
    if 1 in by_count and 4 in by_count:
        ratio = by_count[4] / by_count[1]
        target("PostgreSQL, 4 writers >= 1.5x one writer", f"{ratio:.2f}x", ratio >= 1.5)
    rss = open_rss_mb()
    target("import + Ledger.open peak RSS < 100 MB", f"{rss:.0f} MB", rss < 100)
    print("\ntargets (measured in this run):")
    for name, value, ok in checks:
        mark = "note" if ok is None else "hit" if ok else "MISS"
        print(f"  [{mark}] {name}: {value}")


def open_rss_mb(url: str | None = None) -> float:
    """Peak RSS of a fresh interpreter that imports the Ledger and opens a store."""
    import subprocess

    code = (
        "import resource, sys, tempfile\n"
        f"sys.path[:0] = {[str(ROOT / p) for p in ('domain', 'projections', 'adapters')]!r}\n"
        "from auditledger.adapters import Ledger\n"
        "url = sys.argv[1] if len(sys.argv) > 1 else 'sqlite:///' + tempfile.mkdtemp() + '/l'\n"
        "Ledger.open(url).close()\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(rss, 'openai' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *([url] if url else [])],
        check=True,
        capture_output=True,
        text=True,
    )
    rss, openai_loaded = out.stdout.split()
    if openai_loaded == "True":
        print("  note: importing the Ledger imported openai (it should load only when used)")
    return float(rss)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres,memory")
    parser.add_argument("--modes", default="commit,unit,group")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument(
        "--writers", default="1,2,4,8", help="PostgreSQL writer processes to measure ('' to skip)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement; the median is shown"
    )
    parser.add_argument("--writer-mode", default="unit")
    parser.add_argument(
        "--writer-tokens",
        type=int,
        default=2000,
        help="tokens each writer records (0: --tokens shared out between the writers)",
    )
    parser.add_argument("--open-rss", action="store_true", help="only import + open peak RSS")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    unknown = {b for b in args.backends.split(",") if b} - {"sqlite", "postgres", "memory"}
    unknown |= {m for m in args.modes.split(",") if m} - {"commit", "unit", "group"}
    if unknown:
        parser.error(f"unknown backend or mode: {', '.join(sorted(unknown))}")
    if args.open_rss:
        print(f"import + Ledger.open peak RSS: {open_rss_mb():.1f} MB")
        return
    print(f"load before: {os.getloadavg()[0]:.2f}  cores: {os.cpu_count()}  tokens: {args.tokens}")
    rows = []
    for backend in [b for b in args.backends.split(",") if b]:
        for mode in [m for m in args.modes.split(",") if m]:
            rows.append(measure_median(backend, mode, args.tokens, args.repeat))
            if args.json:
                print(json.dumps(rows[-1]))
    counts = [int(c) for c in args.writers.split(",") if c]
    each = args.writer_tokens > 0
    scale = writers(counts, args.writer_mode, args.writer_tokens or args.tokens, each=each)
    if not args.json:
        print_table(rows)
        if scale:
            share = f"{args.writer_tokens} tokens each" if each else f"{args.tokens} tokens in all"
            print(f"\nPostgreSQL writer processes ({args.writer_mode}, {share}):")
            base = scale[0]["facts_per_s"]
            for s in scale:
                print(
                    f"  {s['writers']} writers: {s['facts_per_s']:7.0f} facts/s "
                    f"({s['facts_per_s'] / base:.2f}x)  wall {s['wall_s']:.2f} s"
                )
        print_targets(rows, scale)
    else:
        for s in scale:
            print(json.dumps(s))
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
