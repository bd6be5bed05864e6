"""Reads of the landscape: the lineage of a run, a token or a state, a run's rows, and what
of a run is not settled yet.

explain returns pydantic models: run -> its states in step order (with their input, output
and context refs) -> each state's calls with status, latency, payload availability and llm
summary -> the batches a state executed, the state that executed each, and each member's
result call.

Reads fail closed: every row explain or run_rows serves is checked against the landscape's
row invariants (invariants.py); a row that breaks one is LandscapeCorrupt naming the table,
the row's key and the rule, and nothing of the answer is served.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, Select, Table, func, literal, or_, select, union_all

from auditledger.domain.errors import (
    InvalidArgument,
    LandscapeCorrupt,
    UnknownRun,
    UnknownState,
    UnknownToken,
)
from auditledger.domain.lifecycle import BatchStatus, Status

from . import tables
from .invariants import broken
from .runner import read_position
from .schema import Landscape, chunked

# digest -> its PayloadStatus (present, purged or missing) for each payload ref asked, in one go
# (PayloadStore.statuses). The views below take their columns straight from the landscape
# rows (pydantic ignores the columns a view does not show).
Availability = Callable[[Iterable[str]], Mapping[str, str]]

MEMBER_CUSTOM_ID = "{batch_id}:{ordinal}"
"""The summary's custom_id of a batch member's result call (docs/calls.md: the Batch API
line of member n of a batch is custom_id "<batch_id>:<n>")."""


class CallView(BaseModel):
    call_id: str
    call_index: int
    call_type: str
    status: str
    latency_ms: float | None
    request_hash: str
    request_ref: str
    request_payload: str
    response_hash: str | None
    response_ref: str | None
    response_payload: str | None
    error_json: str | None
    created_at: datetime
    summary: Any = None
    """The llm summary as recorded (model, tokens, service_tier, via_batch, ...), or None."""


class StateRef(BaseModel):
    """The state that executed a batch, as a batch names it."""

    state_id: str
    token_id: str
    node_id: str
    step_index: int
    attempt: int
    status: str


class MemberView(BaseModel):
    token_id: str
    ordinal: int
    result_call: CallView | None = None
    """The call on the executing state that carries this member's result (its summary's
    custom_id is MEMBER_CUSTOM_ID), or None when there is none (yet)."""


class BatchView(BaseModel):
    batch_id: str
    aggregation_node_id: str
    aggregation_state_id: str | None
    attempt: int
    status: str
    trigger_reason: str | None = None
    created_at: datetime
    completed_at: datetime | None
    executed_by: StateRef | None = None
    retry_of_batch_id: str | None = None
    members: list[MemberView]


class StateView(BaseModel):
    state_id: str
    token_id: str
    node_id: str
    step_index: int
    attempt: int
    status: str
    input_hash: str | None
    input_payload: str | None = None
    output_hash: str | None
    output_payload: str | None = None
    context_hash: str | None = None
    """How the state ran (pool size, retries, join order), as the engine told it."""
    context_payload: str | None = None
    error_json: str | None
    started_at: datetime
    completed_at: datetime | None
    duration_ms: float | None
    context_json: str | None = None
    calls: list[CallView]
    batches: list[BatchView]


STATE_REFS = ("input", "output", "context")
"""The payload refs of a state: `<name>_hash` columns, shown with `<name>_payload`."""


class OperationView(BaseModel):
    operation_id: str
    node_id: str
    operation_type: str
    status: str
    started_at: datetime
    completed_at: datetime | None
    duration_ms: float | None
    calls: list[CallView]


class RunView(BaseModel):
    run_id: str
    status: str
    config_hash: str
    started_at: datetime
    completed_at: datetime | None
    states: list[StateView]
    operations: list[OperationView]
    batches: list[BatchView]
    """Batches in scope that no state shown here executed (drafts, a token's batches)."""


class Explanation(BaseModel):
    runs: list[RunView]


def served(table: Table, row: Any) -> Any:
    """`row` of `table` if it keeps every row invariant; LandscapeCorrupt otherwise."""
    values = row._mapping
    rule = broken(table.name, values)
    if rule is not None:
        raise LandscapeCorrupt(table.name, _key(table, values), str(rule))
    return row


def _key(table: Table, values: Mapping[str, Any]) -> str:
    return ", ".join(f"{c.name}={values[c.name]}" for c in table.primary_key.columns)


def _rows(conn: Connection, table: Table, query: Select[Any]) -> list[Any]:
    return [served(table, row) for row in conn.execute(query)]


def explain(
    conn: Connection,
    availability: Availability,
    *,
    state_id: str | None = None,
    token_id: str | None = None,
    run_id: str | None = None,
) -> Explanation:
    land = Landscape.live()
    runs, states, batches, members = (
        land[tables.runs],
        land[tables.node_states],
        land[tables.batches],
        land[tables.batch_members],
    )
    given = [v for v in (state_id, token_id, run_id) if v is not None]
    if len(given) != 1:
        raise InvalidArgument(
            "explain",
            {"state_id": state_id, "token_id": token_id, "run_id": run_id},
            "name exactly one of state_id, token_id, run_id",
        )
    order = (states.c.step_index, states.c.token_id, states.c.attempt, states.c.started_at)
    state_query: Select[Any] = select(states).order_by(*order)
    extra_batches: Select[Any] | None = None
    if state_id is not None:
        state_query = state_query.where(states.c.state_id == state_id)
    elif token_id is not None:
        state_query = state_query.where(states.c.token_id == token_id)
        member_of = select(members.c.batch_id).where(members.c.token_id == token_id)
        extra_batches = select(batches).where(batches.c.batch_id.in_(member_of))
    found = _rows(conn, states, state_query) if run_id is None else []
    if run_id is not None:
        run_ids = [run_id]
    else:
        run_ids = list(dict.fromkeys(r.run_id for r in found))
        if extra_batches is not None:
            run_ids += [r.run_id for r in conn.execute(extra_batches) if r.run_id not in run_ids]
    views: list[RunView] = []
    for rid in run_ids:
        run = next(iter(_rows(conn, runs, select(runs).where(runs.c.run_id == rid))), None)
        if run is None:
            continue
        scope_batches: Select[Any] | None
        if run_id is not None:
            run_states = _rows(
                conn, states, select(states).where(states.c.run_id == rid).order_by(*order)
            )
            scope_batches = select(batches).where(batches.c.run_id == rid)
            operations = _operations(conn, land, rid, availability)
        else:
            run_states = [r for r in found if r.run_id == rid]
            scope_batches = (
                extra_batches.where(batches.c.run_id == rid) if extra_batches is not None else None
            )
            operations = []
        state_views = _state_views(conn, land, list(run_states), availability)
        shown = {s.state_id for s in state_views}
        loose = (
            _batch_views(
                conn,
                land,
                [
                    b
                    for b in _rows(conn, batches, scope_batches.order_by(batches.c.created_at))
                    if b.aggregation_state_id not in shown
                ],
                availability,
            )
            if scope_batches is not None
            else []
        )
        views.append(
            RunView(**run._mapping, states=state_views, operations=operations, batches=loose)
        )
    if not views:
        if run_id is not None:
            raise UnknownRun(run_id)
        if state_id is not None:
            raise UnknownState(state_id)
        raise UnknownToken(token_id)
    return Explanation(runs=views)


def _grouped(
    conn: Connection, table: Any, column: str, ids: list[str], order: Any
) -> dict[str, list[Any]]:
    """Rows of `table` whose `column` is one of `ids`, grouped by it: one query per chunk."""
    grouped: dict[str, list[Any]] = {}
    for chunk in chunked(ids):
        query = select(table).where(table.c[column].in_(chunk)).order_by(table.c[column], order)
        for row in _rows(conn, table, query):
            grouped.setdefault(row._mapping[column], []).append(row)
    return grouped


def _summary(table: Table, r: Any) -> Any:
    if r.summary_json is None:
        return None
    try:
        return json.loads(r.summary_json)
    except ValueError:
        raise LandscapeCorrupt(
            table.name, _key(table, r._mapping), "summary_json is JSON (the ledger wrote it so)"
        ) from None


def _call_view(table: Table, r: Any, availability: Mapping[str, str]) -> CallView:
    return CallView(
        **r._mapping,
        request_payload=availability[r.request_ref],
        response_payload=None if r.response_ref is None else availability[r.response_ref],
        summary=_summary(table, r),
    )


def _calls_of(
    conn: Connection,
    land: Landscape,
    column: str,
    parent_ids: list[str],
    availability: Availability,
) -> dict[str, list[CallView]]:
    calls = land[tables.calls]
    rows = _grouped(conn, calls, column, parent_ids, calls.c.call_index)
    refs = {ref for rs in rows.values() for r in rs for ref in (r.request_ref, r.response_ref)}
    refs.discard(None)
    status = availability(refs)
    return {parent: [_call_view(calls, r, status) for r in rs] for parent, rs in rows.items()}


def _batch_views(
    conn: Connection,
    land: Landscape,
    rows: list[Any],
    availability: Availability,
    loaded: Sequence[Any] = (),
    calls_of: Mapping[str, list[CallView]] | None = None,
) -> list[BatchView]:
    """`loaded`: state rows already read, with their calls in `calls_of`; an executing state
    among them is not read again."""
    members, states = land[tables.batch_members], land[tables.node_states]
    members_of = _grouped(conn, members, "batch_id", [b.batch_id for b in rows], members.c.ordinal)
    executors = list(dict.fromkeys(b.aggregation_state_id for b in rows if b.aggregation_state_id))
    state_of = {row.state_id: row for row in loaded}
    missing = [sid for sid in executors if sid not in state_of]
    for sid, found in _grouped(conn, states, "state_id", missing, states.c.state_id).items():
        state_of[sid] = found[0]
    executed_by = {sid: StateRef(**state_of[sid]._mapping) for sid in executors if sid in state_of}
    known = {**(calls_of or {}), **_calls_of(conn, land, "state_id", missing, availability)}
    return [
        BatchView(
            **row._mapping,
            executed_by=executed_by.get(row.aggregation_state_id or ""),
            members=[
                MemberView(
                    **m._mapping,
                    result_call=_result_call(row, m, known.get(row.aggregation_state_id or "", [])),
                )
                for m in members_of.get(row.batch_id, [])
            ],
        )
        for row in rows
    ]


def _result_call(batch: Any, member: Any, calls: list[CallView]) -> CallView | None:
    custom_id = MEMBER_CUSTOM_ID.format(batch_id=batch.batch_id, ordinal=member.ordinal)
    return next(
        (
            c
            for c in calls
            if isinstance(c.summary, dict) and c.summary.get("custom_id") == custom_id
        ),
        None,
    )


def _state_views(
    conn: Connection, land: Landscape, rows: list[Any], availability: Availability
) -> list[StateView]:
    batches = land[tables.batches]
    ids = [row.state_id for row in rows]
    calls_of = _calls_of(conn, land, "state_id", ids, availability)
    executed = _grouped(conn, batches, "aggregation_state_id", ids, batches.c.created_at)
    batch_rows = [b for row in rows for b in executed.get(row.state_id, [])]
    views_of: dict[str, list[BatchView]] = {}
    for view in _batch_views(conn, land, batch_rows, availability, rows, calls_of):
        views_of.setdefault(view.aggregation_state_id or "", []).append(view)
    refs = {row._mapping.get(f"{name}_hash") for row in rows for name in STATE_REFS}
    status = availability(ref for ref in refs if ref is not None)
    return [
        StateView.model_validate(
            {
                **row._mapping,
                **_payloads(row._mapping, status),
                "calls": calls_of.get(row.state_id, []),
                "batches": views_of.get(row.state_id, []),
            }
        )
        for row in rows
    ]


def _payloads(values: Mapping[str, Any], status: Mapping[str, str]) -> dict[str, str | None]:
    """`<name>_payload` (the availability of `<name>_hash`) for each ref a state has."""
    shown: dict[str, str | None] = {}
    for name in STATE_REFS:
        ref = values.get(f"{name}_hash")
        shown[f"{name}_payload"] = None if ref is None else status[ref]
    return shown


def _operations(
    conn: Connection, land: Landscape, run_id: str, availability: Availability
) -> list[OperationView]:
    ops = land[tables.operations]
    rows = _rows(
        conn,
        ops,
        select(ops).where(ops.c.run_id == run_id).order_by(ops.c.started_at, ops.c.operation_id),
    )
    calls_of = _calls_of(conn, land, "operation_id", [r.operation_id for r in rows], availability)
    return [OperationView(**r._mapping, calls=calls_of.get(r.operation_id, [])) for r in rows]


UNSETTLED_SHOWN = 5


def unsettled(conn: Connection, run_id: str) -> tuple[int, tuple[str, ...]]:
    """How many states and operations of a run are open or pending and how many batches are
    draft or executing, and up to UNSETTLED_SHOWN of their ids (states first)."""
    land = Landscape.live()
    states, ops, batches = land[tables.node_states], land[tables.operations], land[tables.batches]
    live = (Status.OPEN.value, Status.PENDING.value)
    parts = union_all(
        select(states.c.state_id.label("id"), literal(0).label("kind")).where(
            states.c.run_id == run_id, states.c.status.in_(live)
        ),
        select(ops.c.operation_id, literal(1)).where(
            ops.c.run_id == run_id, ops.c.status.in_(live)
        ),
        select(batches.c.batch_id, literal(2)).where(
            batches.c.run_id == run_id,
            batches.c.status.in_((BatchStatus.DRAFT.value, BatchStatus.EXECUTING.value)),
        ),
    ).subquery()
    count = int(conn.scalar(select(func.count()).select_from(parts)) or 0)
    if not count:
        return 0, ()
    shown = conn.execute(
        select(parts.c.id).order_by(parts.c.kind, parts.c.id).limit(UNSETTLED_SHOWN)
    ).scalars()
    return count, tuple(str(i) for i in shown)


def unsettled_at(conn: Connection, run_id: str) -> tuple[int, int, tuple[str, ...]]:
    """The landscape's position and what `unsettled` says there, read in one transaction
    (the position is what complete_run's log guard starts after)."""
    position = read_position(conn, Landscape.live())
    count, ids = unsettled(conn, run_id)
    return position, count, ids


def run_rows(conn: Connection, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every landscape row of a run as (table name, row), table by table; streams. A row that
    breaks a row invariant stops it with LandscapeCorrupt (what came before it was served)."""
    land = Landscape.live()
    runs, states, ops = land[tables.runs], land[tables.node_states], land[tables.operations]
    calls, batches, members = land[tables.calls], land[tables.batches], land[tables.batch_members]
    if conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is None:
        raise UnknownRun(run_id)
    run_states = select(states.c.state_id).where(states.c.run_id == run_id)
    run_ops = select(ops.c.operation_id).where(ops.c.run_id == run_id)
    run_batches = select(batches.c.batch_id).where(batches.c.run_id == run_id)
    queries: list[tuple[Table, Select[Any]]] = [
        (runs, select(runs).where(runs.c.run_id == run_id)),
        (
            states,
            select(states)
            .where(states.c.run_id == run_id)
            .order_by(states.c.step_index, states.c.token_id, states.c.attempt),
        ),
        (ops, select(ops).where(ops.c.run_id == run_id).order_by(ops.c.started_at)),
        (
            calls,
            select(calls)
            .where(or_(calls.c.state_id.in_(run_states), calls.c.operation_id.in_(run_ops)))
            .order_by(calls.c.state_id, calls.c.operation_id, calls.c.call_index),
        ),
        (
            batches,
            select(batches).where(batches.c.run_id == run_id).order_by(batches.c.created_at),
        ),
        (
            members,
            select(members)
            .where(members.c.batch_id.in_(run_batches))
            .order_by(members.c.batch_id, members.c.ordinal),
        ),
    ]
    for table, query in queries:
        for row in conn.execution_options(stream_results=True).execute(query):
            yield table.name, dict(served(table, row)._mapping)
