"""Helpers for the landscape tests: random legal histories, a reference fold, table dumps.

The reference fold is written here from the event catalogue, independently of
auditledger.projections.landscape, so the tests compare two implementations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import Engine, select

from auditledger.adapters import Ledger
from auditledger.domain.batch import Batch
from auditledger.domain.errors import LedgerError
from auditledger.projections.tables import LANDSCAPE_TABLES, projection_positions

TABLE_KEYS = {
    "runs": ("run_id",),
    "node_states": ("state_id",),
    "operations": ("operation_id",),
    "calls": ("call_id",),
    "batches": ("batch_id",),
    "batch_members": ("batch_id", "token_id"),
}


def naive(moment: Any) -> Any:
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def dump(engine: Engine) -> dict[str, dict[Any, dict[str, Any]]]:
    """Every landscape row, keyed by primary key, with timestamps as naive UTC."""
    out: dict[str, dict[Any, dict[str, Any]]] = {}
    with engine.connect() as conn:
        for table in LANDSCAPE_TABLES:
            rows = {}
            for row in conn.execute(select(table)):
                values = {k: naive(v) for k, v in row._mapping.items()}
                rows[tuple(values[k] for k in TABLE_KEYS[table.name])] = values
            out[table.name] = rows
    return out


def position(engine: Engine) -> int:
    with engine.connect() as conn:
        value = conn.scalar(
            select(projection_positions.c.position).where(
                projection_positions.c.projection == "landscape"
            )
        )
    return int(value or 0)


def log_events(ledger: Ledger, stop: int | None = None) -> list[tuple[int, Any]]:
    notes = ledger.app.recorder.select_notifications(start=1, limit=10**9, stop=stop)
    return [(n.id, ledger.app.mapper.to_domain_event(n)) for n in notes]


def reference_fold(events: list[tuple[int, Any]]) -> dict[str, dict[Any, dict[str, Any]]]:
    """The landscape the issue describes, computed event by event in plain Python."""
    tables: dict[str, dict[Any, dict[str, Any]]] = {name: {} for name in TABLE_KEYS}
    for _, e in events:
        kind = type(e).__qualname__
        oid = str(e.originator_id)
        at = naive(e.timestamp)
        if kind == "Run.RunStarted":
            tables["runs"][(oid,)] = dict(
                run_id=oid,
                status="running",
                config_hash=e.config_hash,
                config_json=e.config_json,
                started_at=at,
                completed_at=None,
            )
        elif kind == "Run.RunCompleted":
            tables["runs"][(oid,)].update(status=e.status, completed_at=at)
        elif kind == "Run.RunResumed":
            tables["runs"][(oid,)].update(status="running", completed_at=None)
        elif kind in ("NodeState.StateOpened", "Operation.OperationStarted"):
            row = dict(
                run_id=str(e.run_id),
                node_id=e.node_id,
                status="open",
                input_hash=e.input_hash,
                output_hash=None,
                error_json=None,
                started_at=at,
                completed_at=None,
                duration_ms=None,
            )
            if kind == "NodeState.StateOpened":
                row.update(
                    state_id=oid,
                    token_id=e.token_id,
                    step_index=e.step_index,
                    attempt=e.attempt,
                    context_hash=None,
                    context_json=None,
                )
                tables["node_states"][(oid,)] = row
            else:
                row.update(operation_id=oid, operation_type=e.operation_type)
                tables["operations"][(oid,)] = row
        elif kind.endswith(".CallRecorded"):
            on_state = kind.startswith("NodeState")
            tables["calls"][(e.call_id,)] = dict(
                call_id=e.call_id,
                state_id=oid if on_state else None,
                operation_id=None if on_state else oid,
                call_index=e.call_index,
                call_type=e.call_type,
                status=e.status,
                request_hash=e.request_hash,
                request_ref=e.request_ref,
                response_hash=e.response_hash,
                response_ref=e.response_ref,
                error_json=e.error_json,
                latency_ms=e.latency_ms,
                created_at=at,
                started_at=naive(e.started_at),
                summary_json=e.summary_json,
            )
        elif kind in ("NodeState.StatePending", "Operation.OperationPending"):
            row = _parent(tables, kind, oid)
            row["status"] = "pending"
            _context(row, kind, e)
        elif kind in (
            "NodeState.StateCompleted",
            "Operation.OperationCompleted",
            "NodeState.StateFailed",
            "Operation.OperationFailed",
        ):
            row = _parent(tables, kind, oid)
            if kind.endswith("Completed"):
                row.update(status="completed", output_hash=e.output_hash)
            else:
                row.update(status="failed", error_json=e.error_json)
            row["completed_at"] = at
            measured = e.duration_ms
            derived = (at - row["started_at"]).total_seconds() * 1000.0
            row["duration_ms"] = derived if measured is None else measured
            _context(row, kind, e)
        elif kind in ("Batch.BatchCreated", "Batch.BatchRetried"):
            tables["batches"][(oid,)] = dict(
                batch_id=oid,
                run_id=str(e.run_id),
                aggregation_node_id=e.aggregation_node_id,
                aggregation_state_id=None,
                attempt=e.attempt,
                status="draft",
                error_json=None,
                created_at=at,
                completed_at=None,
                retry_of_batch_id=(
                    str(e.retry_of_batch_id) if kind == "Batch.BatchRetried" else None
                ),
                trigger_reason=None,
            )
        elif kind == "Batch.BatchMemberAdded":
            tables["batch_members"][(oid, e.token_id)] = dict(
                batch_id=oid, token_id=e.token_id, ordinal=e.ordinal
            )
        elif kind == "Batch.BatchLinked":
            tables["batches"][(oid,)].update(
                aggregation_state_id=str(e.state_id),
                status="executing",
                trigger_reason=e.trigger_reason,
            )
        elif kind == "Batch.BatchCompleted":
            tables["batches"][(oid,)].update(status="completed", completed_at=at)
        elif kind == "Batch.BatchFailed":
            tables["batches"][(oid,)].update(
                status="failed", error_json=e.error_json, completed_at=at
            )
    return tables


def _context(row: dict[str, Any], kind: str, e: Any) -> None:
    """A state's context columns hold the latest context given; operations have none."""
    if kind.startswith("NodeState") and e.context_hash is not None:
        row.update(context_hash=e.context_hash, context_json=e.context_json)


def _parent(tables: dict[str, dict[Any, dict[str, Any]]], kind: str, oid: str) -> dict[str, Any]:
    return tables["node_states" if kind.startswith("NodeState") else "operations"][(oid,)]


OPS = (
    "run",
    "state",
    "call",
    "pending",
    "complete",
    "fail",
    "operation",
    "op_call",
    "op_complete",
    "batch",
    "member",
    "link",
    "batch_complete",
    "batch_fail",
    "batch_retry",
    "run_complete",
    "run_resume",
)


@st.composite
def histories(draw: st.DrawFn, max_steps: int = 40) -> list[tuple[str, int, int]]:
    """A list of (operation, pick, pick): applied by `record`, illegal moves are refused."""
    steps = draw(
        st.lists(
            st.tuples(st.sampled_from(OPS), st.integers(0, 7), st.integers(0, 7)),
            min_size=1,
            max_size=max_steps,
        )
    )
    return [("run", 0, 0), *steps]


def record(ledger: Ledger, steps: list[tuple[str, int, int]]) -> None:
    """Apply the steps through the Ledger; each refused one (a LedgerError) wrote nothing."""
    runs: list[str] = []
    states: list[tuple[str, str, str, str]] = []
    operations: list[str] = []
    batches: list[str] = []

    def pick(items: list[Any], n: int) -> Any:
        return items[n % len(items)] if items else None

    for counter, (op, a, b) in enumerate(steps, start=1):
        try:
            if op == "run":
                runs.append(ledger.begin_run(config={"n": counter}))
            elif op == "run_complete" and runs:
                ledger.complete_run(pick(runs, a), status=("completed", "failed")[b % 2])
            elif op == "run_resume" and runs:
                ledger.resume_run(pick(runs, a))
            elif op == "state" and runs:
                run = pick(runs, a)
                token, node = f"t{b % 4}", f"n{a % 2}"
                attempt = sum(1 for s in states if s[1:] == (run, token, node))
                states.append(
                    (
                        ledger.open_state(
                            run_id=run,
                            token_id=token,
                            node_id=node,
                            step_index=a % 3,
                            input={"c": counter},
                            attempt=attempt,
                        ),
                        run,
                        token,
                        node,
                    )
                )
            elif op == "call" and states:
                ledger.record_call(
                    pick(states, a)[0],
                    call_type="llm",
                    request={"q": counter},
                    response={"a": counter} if b % 3 else None,
                    error={"e": counter} if b % 3 == 0 else None,
                    latency_ms=float(b),
                )
            elif op == "pending" and states:
                ledger.mark_pending(
                    pick(states, a)[0], reason="waiting", context={"p": b} if b % 2 else None
                )
            elif op == "complete" and states:
                ledger.complete_state(
                    pick(states, a)[0],
                    output={"o": counter},
                    context={"pool": b, "arrival": [a, b]} if b % 2 else None,
                    duration_ms=float(b * 10) if b % 3 == 0 else None,
                )
            elif op == "fail" and states:
                ledger.fail_state(
                    pick(states, a)[0],
                    error={"e": counter},
                    context={"retries": b} if b % 2 == 0 else None,
                    duration_ms=2.5 * b if b % 2 else None,
                )
            elif op == "operation" and runs:
                operations.append(
                    ledger.begin_operation(
                        run_id=pick(runs, a), node_id="source", operation_type="source_load"
                    )
                )
            elif op == "op_call" and operations:
                ledger.record_call(
                    operation_id=pick(operations, a), call_type="file", request={"f": counter}
                )
            elif op == "op_complete" and operations:
                ledger.complete_operation(
                    pick(operations, a), output={"rows": b}, duration_ms=float(b) if b % 2 else None
                )
            elif op == "batch" and runs:
                batches.append(ledger.create_batch(pick(runs, a), f"n{b % 2}"))
            elif op == "member" and batches:
                ledger.add_batch_member(pick(batches, a), f"t{b}")
            elif op == "link" and batches and states:
                ledger.link_batch(
                    pick(batches, a), pick(states, b)[0], ("count=10", None, "timeout")[a % 3]
                )
            elif op == "batch_complete" and batches:
                ledger.complete_batch(pick(batches, a))
            elif op == "batch_fail" and batches:
                ledger.fail_batch(pick(batches, a), error={"e": counter})
            elif op == "batch_retry" and batches:
                failed = pick(batches, a)
                members = sorted(ledger.load(Batch, failed).members)[b % 2 :] or None
                batches.append(ledger.retry_batch(failed, members=members))
        except LedgerError:
            pass


@dataclass
class Scenario:
    run_id: str
    states: list[str]
    batch_id: str


def record_scenario(ledger: Ledger, ending: str = "completed") -> Scenario:
    """A small fixed run: a source operation, four tokens (one retried), a linked batch.

    Ending it "completed" catches the landscape up (complete_run asks it what is unsettled)."""
    run_id = ledger.begin_run(config={"pipeline": "scenario"})
    source = ledger.begin_operation(run_id=run_id, node_id="source", operation_type="source_load")
    ledger.record_call(operation_id=source, call_type="file", request={"path": "in.csv"})
    ledger.complete_operation(source, output={"rows": 4})
    states = []
    for n in range(4):
        token = f"{run_id[:8]}/tok-{n}"
        attempt = 0
        if n == 1:
            failed = ledger.open_state(
                run_id=run_id, token_id=token, node_id="classify", step_index=1
            )
            ledger.record_call(failed, call_type="llm", request={"n": n}, error={"s": 429})
            ledger.fail_state(failed, error={"type": "RateLimit"})
            states.append(failed)
            attempt = 1
        state = ledger.open_state(
            run_id=run_id, token_id=token, node_id="classify", step_index=1, attempt=attempt
        )
        ledger.record_call(
            state, call_type="llm", request={"n": n, "a": attempt}, response={"label": n}
        )
        ledger.record_call(
            state, call_type="llm", request={"n": n, "second": True}, response={"ok": True}
        )
        ledger.complete_state(state, output={"label": n})
        states.append(state)
    batch = ledger.create_batch(run_id, "summarise")
    for n in range(3):
        ledger.add_batch_member(batch, f"{run_id[:8]}/tok-{n}")
    summarise = ledger.open_state(
        run_id=run_id, token_id=f"{run_id[:8]}/batch-0", node_id="summarise", step_index=2
    )
    ledger.link_batch(batch, summarise)
    ledger.record_call(
        summarise, call_type="llm_batch", request={"submit": 3}, response={"status": "in_progress"}
    )
    ledger.mark_pending(summarise, reason="provider batch")
    ledger.complete_state(summarise, output={"summary": "3"})
    ledger.complete_batch(batch)
    states.append(summarise)
    ledger.complete_run(run_id, ending)
    return Scenario(run_id=run_id, states=states, batch_id=batch)
