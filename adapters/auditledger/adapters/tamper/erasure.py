"""Erase a subject's payload bytes; the events, their hashes and the chain stay.

A subject is a run (its config and every state, operation, call and batch of the run), a
token (the states of that token id in every run, and their calls), or a token within one
run. Its digests are the payload digests its events name (chain_format.payload_digests:
inputs, outputs, requests, responses, attachments). A digest another subject's event also
names (content addressing: the same bytes recorded twice) is kept, and listed as kept.

Order: every rule is checked first (a subject with no events, no reason, records younger
than the store's minimum retention without an override: refused, nothing deleted); then the
bytes are deleted, each row marked with the erasure's id, time and reason; then the
ErasureRecorded event is saved. Nothing here writes an event or a chain row other than that
one event, so every chain hash, checkpoint and Merkle proof over the log stays valid.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID, uuid4

from auditledger.adapters.storage.event_store import LedgerApplication
from auditledger.adapters.storage.payloads import PayloadStore
from auditledger.adapters.storage.stores import Stores
from auditledger.adapters.tamper.chain_format import payload_digests
from auditledger.adapters.writing.write_path import WritePath
from auditledger.domain.erasure import Erasure, RetentionOverride, subject_name
from auditledger.domain.errors import InvalidArgument, UnknownRun, UnknownToken

STATE_OPENED = "auditledger:NodeState.StateOpened:v1"
UNOWNED_TOPICS = ("auditledger:Erasure.", "auditledger:RetentionOverride.")
"""Records about erasures and purges: never part of a subject (nor a payload's users)."""


class LoggedEvent(Protocol):
    """An event as stored: enough to attribute it and read the digests it names."""

    @property
    def topic(self) -> str: ...

    @property
    def originator(self) -> str: ...

    @property
    def state(self) -> bytes: ...


@dataclass
class Attribution:
    """Who each event belongs to, and which events name each digest, over the whole log."""

    run_of: dict[str, str] = field(default_factory=dict)
    token_of: dict[str, str] = field(default_factory=dict)
    newest: dict[str, datetime] = field(default_factory=dict)
    """originator -> its newest event's time"""
    named_by: dict[str, set[str]] = field(default_factory=dict)
    """digest -> the originators whose events name it"""

    def add(self, event: LoggedEvent) -> None:
        if event.topic.startswith(UNOWNED_TOPICS):
            return
        body = json.loads(event.state)
        originator = event.originator.replace("-", "")
        owner = owner_run(event.topic, originator, body)
        if owner is not None:
            self.run_of.setdefault(originator, owner)
        if event.topic == STATE_OPENED and isinstance(body.get("token_id"), str):
            self.token_of[originator] = body["token_id"]
        when = event_time(body)
        if originator not in self.newest or self.newest[originator] < when:
            self.newest[originator] = when
        for digest in payload_digests(event.state):
            self.named_by.setdefault(digest, set()).add(originator)

    def subject(self, run_hex: str | None, token_id: str | None) -> set[str]:
        """The originators of a run, a token, or a token within a run."""
        return {
            originator
            for originator in self.newest
            if (token_id is None or self.token_of.get(originator) == token_id)
            and (run_hex is None or self.run_of.get(originator) == run_hex)
        }


def owner_run(topic: str, originator: str, body: dict[str, object]) -> str | None:
    """The run an event belongs to (a Run's own events, or an event naming its run_id)."""
    if topic.startswith("auditledger:Run."):
        return originator.replace("-", "")
    run = body.get("run_id")
    if isinstance(run, dict) and isinstance(run.get("_data_"), str):
        return str(run["_data_"]).replace("-", "")
    return None


def event_time(body: dict[str, object]) -> datetime:
    stamp = body["timestamp"]
    assert isinstance(stamp, dict)
    when = datetime.fromisoformat(str(stamp["_data_"]))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ErasurePlan:
    erased: tuple[str, ...]
    kept: tuple[str, ...]
    youngest: datetime


def plan_erasure(
    events: Iterable[Sequence[LoggedEvent]], run_id: UUID | None, token_id: str | None
) -> ErasurePlan:
    """The digests only the subject names (to erase), the shared ones (kept), its youngest
    event's time; UnknownRun / UnknownToken when the log holds nothing of the subject."""
    seen = Attribution()
    for batch in events:
        for event in batch:
            seen.add(event)
    members = seen.subject(None if run_id is None else run_id.hex, token_id)
    if not members:
        if token_id is not None:
            raise UnknownToken(token_id if run_id is None else f"{token_id} (in run {run_id})")
        raise UnknownRun(run_id)
    named = {d for d, users in seen.named_by.items() if users & members}
    kept = {d for d in named if seen.named_by[d] - members}
    return ErasurePlan(
        erased=tuple(sorted(named - kept)),
        kept=tuple(sorted(kept)),
        youngest=max(seen.newest[o] for o in members),
    )


@dataclass(frozen=True)
class ErasureResult:
    erasure_id: str
    subject: str
    payloads_erased: int
    bytes_erased: int
    kept: int
    retention_overridden: bool


class Eraser:
    """erase(): plan from the log, check the rules, delete the bytes, record the erasure."""

    def __init__(self, stores: Stores, writes: WritePath, retention: timedelta) -> None:
        self.app = stores.application
        self.payloads: PayloadStore = stores.payloads
        self.writes = writes
        self.retention = retention

    def erase(
        self,
        run_id: UUID | None,
        token_id: str | None,
        *,
        reason: str,
        override_retention: bool = False,
        now: datetime | None = None,
    ) -> ErasureResult:
        if run_id is None and token_id is None:
            raise InvalidArgument("subject", None, "name a run, a token, or both")
        plan = plan_erasure(logged_events(self.app), run_id, token_id)
        sizes = self.payloads.sizes(plan.erased)
        erasure = Erasure.record(
            erasure_id=uuid4(),
            run_id=run_id,
            token_id=token_id,
            reason=reason,
            erased_digests=tuple(sorted(sizes)),
            kept_digests=plan.kept,
            bytes_erased=sum(sizes.values()),
            retention=self.retention,
            youngest_age=(now or datetime.now(UTC)) - plan.youngest,
            override_retention=override_retention,
        )
        gone = self.payloads.erase(sizes, str(erasure.id), erasure.reason)
        self.writes.create(
            erasure,
            [],
            on_duplicate=lambda: InvalidArgument("erasure_id", str(erasure.id), "already used"),
        )
        return ErasureResult(
            erasure_id=str(erasure.id),
            subject=subject_name(run_id, token_id),
            payloads_erased=gone.payloads,
            bytes_erased=gone.size,
            kept=len(plan.kept),
            retention_overridden=erasure.retention_overridden,
        )


@dataclass(frozen=True)
class _Logged:
    topic: str
    originator: str
    state: bytes


def logged_events(app: LedgerApplication, batch: int = 5_000) -> Iterator[list[_Logged]]:
    """Every stored event, in log order, through the application's recorder (any backend)."""
    start = 1
    while True:
        found = app.recorder.select_notifications(start, batch)
        if not found:
            return
        yield [
            _Logged(
                n.topic,
                n.originator_id.hex if isinstance(n.originator_id, UUID) else str(n.originator_id),
                bytes(n.state),
            )
            for n in found
        ]
        start = found[-1].id + 1


def record_purge_override(
    url: str,
    *,
    run_id: UUID | None,
    reason: str,
    retention: timedelta,
    youngest_age: timedelta,
    older_than: timedelta,
    payload_count: int,
) -> str:
    """Record that a purge deletes records younger than the retention; returns its id."""
    override = RetentionOverride.record_purge(
        override_id=uuid4(),
        run_id=run_id,
        reason=reason,
        retention=retention,
        youngest_age=youngest_age,
        older_than=older_than,
        payload_count=payload_count,
    )
    stores = Stores.open(url)
    try:
        stores.application.save(override)
    finally:
        stores.close()
    return str(override.id)
