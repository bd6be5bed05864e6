"""verify: the landscape's invariants, checked one by one, each with its counts.

Read-only: it never catches up or repairs what it checks (catch up first if you want the
newest events included; a landscape behind the log fails the position check). The rebuild
diff builds a fresh landscape up to the live position in a shadow and compares every row;
with it, one pass over the log checks what the landscape's rows cannot show (the order of
a batch's link and its state's end).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, and_, except_, func, literal, or_, select, union_all

from auditledger.domain.batch import BATCH_COMPLETED, BATCH_FAILED, EXECUTING, Batch
from auditledger.domain.lifecycle import OPEN
from auditledger.domain.node_state import NodeState
from auditledger.domain.run import RUN_COMPLETED

from .rebuild import build, shadow
from .runner import EventSource, read_position
from .schema import Landscape

SAMPLES = 5


class PayloadReader(Protocol):
    """The payload store as verify sees it (the PayloadStore port satisfies it)."""

    def read_many(self, digests: Iterable[str]) -> Mapping[str, tuple[bytes | None, bool]]:
        """(bytes, purged) of each digest; (None, False) when never stored."""
        ...


class Check(BaseModel):
    name: str
    passed: bool
    checked: int
    failed: int
    examples: list[str] = []


class VerifyReport(BaseModel):
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def add(self, check: Check) -> None:
        self.checks.append(check)


def _check(name: str, checked: int, bad: list[Any], failed: int | None = None) -> Check:
    count = len(bad) if failed is None else failed
    return Check(
        name=name,
        passed=count == 0,
        checked=checked,
        failed=count,
        examples=[str(b) for b in bad[:SAMPLES]],
    )


def _count(conn: Connection, table: Any) -> int:
    return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def call_parents(conn: Connection, land: Landscape) -> Check:
    calls, states, ops = land["calls"], land["node_states"], land["operations"]
    orphan = select(calls.c.call_id).where(
        or_(
            and_(
                calls.c.state_id.is_not(None),
                ~select(states.c.state_id).where(states.c.state_id == calls.c.state_id).exists(),
            ),
            and_(
                calls.c.operation_id.is_not(None),
                ~select(ops.c.operation_id)
                .where(ops.c.operation_id == calls.c.operation_id)
                .exists(),
            ),
            and_(calls.c.state_id.is_(None), calls.c.operation_id.is_(None)),
        )
    )
    bad = [f"call {r[0]}: its parent does not exist" for r in conn.execute(orphan)]
    return _check("every call's parent exists", _count(conn, calls), bad)


def dense_call_index(conn: Connection, land: Landscape) -> Check:
    calls = land["calls"]
    parent = func.coalesce(calls.c.state_id, calls.c.operation_id)
    per_parent = (
        select(
            parent.label("parent"),
            func.count().label("n"),
            func.min(calls.c.call_index).label("lo"),
            func.max(calls.c.call_index).label("hi"),
        )
        .group_by(parent)
        .subquery()
    )
    total = _count(conn, per_parent)
    rows = conn.execute(
        select(per_parent).where(or_(per_parent.c.lo != 0, per_parent.c.hi != per_parent.c.n - 1))
    ).all()
    bad = [
        f"parent {r.parent}: {r.n} calls with call_index {r.lo}..{r.hi} (want 0..{r.n - 1})"
        for r in rows
    ]
    return _check("call_index is dense (0, 1, 2, ...) per parent", total, bad)


def no_open_state_in_completed_run(conn: Connection, land: Landscape) -> Check:
    states, runs = land["node_states"], land["runs"]
    joined = states.join(runs, states.c.run_id == runs.c.run_id)
    in_completed = runs.c.status == RUN_COMPLETED
    checked = int(conn.scalar(select(func.count()).select_from(joined).where(in_completed)) or 0)
    rows = conn.execute(
        select(states.c.state_id, states.c.run_id)
        .select_from(joined)
        .where(in_completed, states.c.status == OPEN)
    ).all()
    bad = [f"state {r.state_id} is open in completed run {r.run_id}" for r in rows]
    return _check("no state left open in a completed run", checked, bad)


def batches_linked(conn: Connection, land: Landscape) -> Check:
    batches, states = land["batches"], land["node_states"]
    ran = batches.c.status.in_((EXECUTING, BATCH_COMPLETED, BATCH_FAILED))
    has_state = (
        select(states.c.state_id)
        .where(states.c.state_id == batches.c.aggregation_state_id)
        .exists()
    )
    never_ran = and_(batches.c.status == BATCH_FAILED, batches.c.aggregation_state_id.is_(None))
    checked = int(conn.scalar(select(func.count()).select_from(batches).where(ran)) or 0)
    rows = conn.execute(
        select(batches.c.batch_id, batches.c.status, batches.c.aggregation_state_id).where(
            ran, ~never_ran, ~has_state
        )
    ).all()
    bad = [
        f"batch {r.batch_id} is {r.status} but linked to {r.aggregation_state_id or 'no state'}"
        for r in rows
    ]
    return _check("every executing or finished batch is linked to an existing state", checked, bad)


def payload_refs(conn: Connection, land: Landscape, payloads: PayloadReader) -> Check:
    calls = land["calls"]
    refs = union_all(
        select(calls.c.call_id, literal("request").label("part"), calls.c.request_ref.label("ref")),
        select(
            calls.c.call_id, literal("response").label("part"), calls.c.response_ref.label("ref")
        ).where(calls.c.response_ref.is_not(None)),
    ).subquery()
    checked = 0
    bad: list[str] = []
    seen: dict[str, str | None] = {}
    result = conn.execute(select(refs.c.call_id, refs.c.part, refs.c.ref))
    for rows in result.partitions(_REFS_AT_ONCE):  # the bytes of one chunk in memory at a time
        stored = payloads.read_many({ref for _, _, ref in rows if ref not in seen})
        seen.update((ref, _payload_problem(ref, *found)) for ref, found in stored.items())
        for call_id, part, ref in rows:
            checked += 1
            if seen[ref] is not None:
                bad.append(f"call {call_id} {part} {ref}: {seen[ref]}")
    return _check("every payload ref is present (or purged) and hashes to its ref", checked, bad)


_REFS_AT_ONCE = 500


def _payload_problem(ref: str, data: bytes | None, purged: bool) -> str | None:
    if data is None:
        return None if purged else "the payload is missing"
    actual = hashlib.sha256(data).hexdigest()
    return None if actual == ref else f"the stored bytes hash to {actual}"


def position(conn: Connection, land: Landscape, last: int) -> Check:
    current = read_position(conn, land)
    bad: list[str] = []
    if current > last:
        bad.append(f"the landscape is at position {current}, ahead of the log's last {last}")
    elif current < last:
        bad.append(
            f"the landscape is at position {current}, behind the log's last {last} (run catch-up)"
        )
    return _check("the projection position matches the log", last, bad)


def rebuild_diff(engine: Engine, conn: Connection, live: Landscape, source: EventSource) -> Check:
    """Rebuild up to the live position in a shadow and compare every row of every table."""
    stop = read_position(conn, live)
    conn.commit()
    bad: list[str] = []
    failed = checked = 0
    with shadow(conn) as aside:
        build(engine, conn, aside, source, stop=stop)
        for table, copy in zip(live.ordered, aside.ordered, strict=True):
            names = [c.name for c in table.columns]
            checked += _count(conn, table)
            for label, left, right in (
                ("only in the live", table, copy),
                ("missing from the live", copy, table),
            ):
                diff = except_(
                    select(*(left.c[n] for n in names)), select(*(right.c[n] for n in names))
                ).subquery()
                failed += _count(conn, diff)
                for row in conn.execute(select(diff).limit(SAMPLES)):
                    bad.append(f"{table.name} row {label} landscape: {dict(row._mapping)}")
        conn.commit()
    return _check("the live landscape equals a fresh rebuild", checked, bad, failed)


_LOG_CHUNK = 2000


def links_before_state_end(source: EventSource, stop: int) -> Check:
    """Every BatchLinked is in the log before its state's terminal event (positions)."""
    ended: dict[UUID, int] = {}
    links: list[tuple[int, UUID, UUID]] = []
    after = 0
    while after < stop:
        chunk = source.read(after, _LOG_CHUNK, stop)
        if not chunk:
            break
        for at, event in chunk:
            if isinstance(event, Batch.BatchLinked):
                links.append((at, event.originator_id, event.state_id))
            elif isinstance(event, (NodeState.StateCompleted, NodeState.StateFailed)):
                ended.setdefault(event.originator_id, at)
        after = chunk[-1][0]
    bad = [
        f"batch {batch} was linked to state {state} at position {at}, "
        f"after the state ended at position {ended[state]}"
        for at, batch, state in links
        if ended.get(state, at) < at
    ]
    return _check("every batch was linked before its state ended", len(links), bad)


Checker = Callable[[Connection, Landscape], Check]
ROW_CHECKS: tuple[Checker, ...] = (
    call_parents,
    dense_call_index,
    no_open_state_in_completed_run,
    batches_linked,
)


def verify(
    engine: Engine, source: EventSource, payloads: PayloadReader, *, diff: bool = True
) -> VerifyReport:
    live = Landscape.live()
    report = VerifyReport(checks=[])
    with engine.connect() as conn:
        for check in ROW_CHECKS:
            report.add(check(conn, live))
        report.add(payload_refs(conn, live, payloads))
        report.add(position(conn, live, source.last_position()))
        conn.commit()
        if diff:
            report.add(links_before_state_end(source, read_position(conn, live)))
            conn.commit()
            report.add(rebuild_diff(engine, conn, live, source))
    return report
