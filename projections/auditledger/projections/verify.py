"""verify: the landscape's invariants, checked one by one, each with its counts.

Read-only: it never catches up or repairs what it checks; every check runs on what is
projected. A landscape behind the log is flagged, not failed (lag is not tampering; `strict`
makes it a failure), and the events after its position are tried in a transaction that is
rolled back, so an event that would stop catch-up is a failed check naming its position.
Every skipped position is listed, flagged (failed when strict). The rebuild diff builds a
fresh landscape up to the live position in a shadow and compares every row; with it, one
pass over the log checks what the landscape's rows cannot show (the order of a batch's link
and its state's end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, Protocol
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, and_, except_, func, literal, or_, select, union_all

from auditledger.domain.batch import BATCH_COMPLETED, BATCH_FAILED, EXECUTING, Batch
from auditledger.domain.call_parent import CallRecordedEvent
from auditledger.domain.errors import ProjectionStuck, UndecodableEvent
from auditledger.domain.lifecycle import OPEN
from auditledger.domain.node_state import NodeState
from auditledger.domain.payload_status import PayloadStatus, Removal, check
from auditledger.domain.run import RUN_COMPLETED

from . import tables
from .rebuild import build, shadow
from .runner import EventSource, read_position
from .schema import Landscape
from .skips import skips
from .stuck import probe

SAMPLES = 5


class PayloadReader(Protocol):
    """The payload store as verify sees it (the PayloadStore port satisfies it)."""

    def read_many(self, digests: Iterable[str]) -> Mapping[str, tuple[bytes | None, Removal]]:
        """(bytes, removal) of each digest; (None, False) when never stored."""
        ...


class Check(BaseModel):
    name: str
    passed: bool
    checked: int
    failed: int
    examples: list[str] = []
    flagged: bool = False
    """Passed, but with something to see (lag, skipped events); a failure when strict."""


class VerifyReport(BaseModel):
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def flagged(self) -> bool:
        return any(c.flagged for c in self.checks)

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
    calls, states, ops = land[tables.calls], land[tables.node_states], land[tables.operations]
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
    calls = land[tables.calls]
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
    states, runs = land[tables.node_states], land[tables.runs]
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
    batches, states = land[tables.batches], land[tables.node_states]
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


ERASED_PAYLOADS = "erased payloads keep their hashes (bytes deleted by erase, never failed)"


def payload_refs(
    conn: Connection, land: Landscape, payloads: PayloadReader, source: EventSource | None = None
) -> Check:
    """Every request, response and (read from the log, given a source) attachment a projected
    call names: present, purged or erased, and hashing to its digest."""
    return payload_checks(conn, land, payloads, source)[0]


def payload_checks(
    conn: Connection, land: Landscape, payloads: PayloadReader, source: EventSource | None = None
) -> tuple[Check, Check]:
    """payload_refs, and the count of those refs whose bytes were erased (passed, counted)."""
    checked = erased = 0
    bad: list[str] = []
    seen: dict[str, PayloadStatus | str] = {}
    chunks = _call_refs(conn, land)
    if source is not None:
        chunks = chain(chunks, _attachment_refs(conn, land, source))
    for rows in chunks:  # the bytes of one chunk in memory at a time
        stored = payloads.read_many({ref for _, _, ref in rows if ref not in seen})
        seen.update((ref, _payload_problem(ref, *found)) for ref, found in stored.items())
        for call_id, part, ref in rows:
            checked += 1
            found = seen[ref]
            if found is PayloadStatus.ERASED:
                erased += 1
            elif not isinstance(found, PayloadStatus):
                bad.append(f"call {call_id} {part} {ref}: {found}")
    refs = _check("every payload ref is present (or purged) and hashes to its ref", checked, bad)
    return refs, _check(ERASED_PAYLOADS, erased, [])


_REFS_AT_ONCE = 500
_Refs = Iterator[Sequence[tuple[str, str, str]]]


def _call_refs(conn: Connection, land: Landscape) -> _Refs:
    calls = land[tables.calls]
    refs = union_all(
        select(calls.c.call_id, literal("request").label("part"), calls.c.request_ref.label("ref")),
        select(
            calls.c.call_id, literal("response").label("part"), calls.c.response_ref.label("ref")
        ).where(calls.c.response_ref.is_not(None)),
    ).subquery()
    result = conn.execute(select(refs.c.call_id, refs.c.part, refs.c.ref))
    for rows in result.partitions(_REFS_AT_ONCE):
        yield [(call_id, part, ref) for call_id, part, ref in rows]


def _attachment_refs(conn: Connection, land: Landscape, source: EventSource) -> _Refs:
    """The attachment digests of the calls up to the landscape's position, from the log (the
    landscape keeps no attachments). An undecodable event is passed over: `projectable` and
    the rebuild diff name it."""
    stop = read_position(conn, land)
    after = 0
    while after < stop:
        try:
            events = source.read(after, _REFS_AT_ONCE, stop)
            last = events[-1][0] if events else stop
        except UndecodableEvent as error:
            events = source.read(after, _REFS_AT_ONCE, error.position - 1)
            last = error.position
        yield [
            (event.call_id, "attachment", digest)
            for _, event in events
            if isinstance(event, CallRecordedEvent)
            for digest in event.attachment_hashes
        ]
        after = last


def _payload_problem(ref: str, data: bytes | None, purged: Removal) -> PayloadStatus | str:
    """The payload's status when sound, else what is wrong with it."""
    found = check(ref, data, purged)
    if found.status is PayloadStatus.MISSING:
        return "the payload is missing"
    if found.status is PayloadStatus.CORRUPT:
        return f"the stored bytes hash to {found.actual}"
    return found.status


def position(conn: Connection, land: Landscape, last: int, *, strict: bool = False) -> Check:
    current = read_position(conn, land)
    name = "the projection position matches the log"
    if current > last:
        ahead = f"the landscape is at position {current}, ahead of the log's last {last}"
        return _check(name, last, [ahead])
    if current == last:
        return _check(name, last, [])
    behind = (
        f"the landscape is at position {current}, behind the log's last {last} by "
        f"{last - current} (run catch-up); every other check ran on what is projected"
    )
    return _flag(_check(name, last, [behind]), strict)


def _flag(check: Check, strict: bool) -> Check:
    """A finding that is not a broken invariant: flagged, and failed only when strict."""
    if check.failed == 0 or strict:
        return check
    return check.model_copy(update={"passed": True, "flagged": True})


def projectable(conn: Connection, land: Landscape, source: EventSource) -> Check:
    tried, stuck = probe(conn, land, source)
    bad = [] if stuck is None else [str(stuck)]
    return _check("the events after the position can be projected", tried, bad)


def skipped(conn: Connection, *, strict: bool = False) -> Check:
    found = skips(conn)
    listed = [
        f"position {s.position} ({s.topic}) is skipped since {s.skipped_at:%Y-%m-%d %H:%M:%S}: "
        f"{s.reason}; the event is in the log, the landscape does not show it"
        for s in found
    ]
    check = Check(
        name="no event of the log is skipped by the landscape",
        passed=not found,
        checked=len(found),
        failed=len(found),
        examples=listed,  # every one: a skip never leaves the report
    )
    return _flag(check, strict)


def rebuild_diff(engine: Engine, conn: Connection, live: Landscape, source: EventSource) -> Check:
    """Rebuild up to the live position in a shadow and compare every row of every table."""
    stop = read_position(conn, live)
    conn.commit()
    try:
        compared = _compare(engine, conn, live, source, stop)
    except (ProjectionStuck, UndecodableEvent) as error:
        return _check("the live landscape equals a fresh rebuild", stop, [str(error)])
    checked, failed, bad = compared
    return _check("the live landscape equals a fresh rebuild", checked, bad, failed)


def _compare(
    engine: Engine, conn: Connection, live: Landscape, source: EventSource, stop: int
) -> tuple[int, int, list[str]]:
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
    return checked, failed, bad


_LOG_CHUNK = 2000


def links_before_state_end(source: EventSource, stop: int) -> Check:
    """Every BatchLinked is in the log before its state's terminal event (positions)."""
    ended: dict[UUID, int] = {}
    links: list[tuple[int, UUID, UUID]] = []
    after = 0
    name = "every batch was linked before its state ended"
    while after < stop:
        try:
            chunk = source.read(after, _LOG_CHUNK, stop)
        except UndecodableEvent as error:
            return _check(name, len(links), [str(error)])
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
    return _check(name, len(links), bad)


Checker = Callable[[Connection, Landscape], Check]
ROW_CHECKS: tuple[Checker, ...] = (
    call_parents,
    dense_call_index,
    no_open_state_in_completed_run,
    batches_linked,
)


def verify(
    engine: Engine,
    source: EventSource,
    payloads: PayloadReader,
    *,
    diff: bool = True,
    strict: bool = False,
) -> VerifyReport:
    live = Landscape.live()
    report = VerifyReport(checks=[])
    with engine.connect() as conn:
        for check in ROW_CHECKS:
            report.add(check(conn, live))
        for payload_check in payload_checks(conn, live, payloads, source):
            report.add(payload_check)
        report.add(position(conn, live, source.last_position(), strict=strict))
        report.add(skipped(conn, strict=strict))
        conn.commit()
        report.add(projectable(conn, live, source))
        if diff:
            report.add(links_before_state_end(source, read_position(conn, live)))
            conn.commit()
            report.add(rebuild_diff(engine, conn, live, source))
    return report
