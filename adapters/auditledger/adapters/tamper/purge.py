"""Purge: delete payload bytes past retention; the hashes, the events and the chain stay.

A payload is purged only when every event that names it is older than the cutoff, and, with
a run given, when every such event belongs to that run (content-addressed bytes shared with
another run are kept). Payloads no event names (orphans) are left alone. Afterwards verify
reports those payloads as purged, not tampered, and every chain hash still checks.

The store's minimum retention (`?retention_days=`, default 183) is kept: a purge that would
delete a payload last named less than that long ago is refused (RetentionNotReached, nothing
deleted) unless an override reason is given; the override is then recorded as a
RetentionOverride event before any byte goes (a dry run checks the same, records nothing).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from auditledger.adapters.storage.payloads import SqlPayloadStore
from auditledger.adapters.storage.settings import StoreSettings
from auditledger.adapters.tamper.chain_format import payload_digests
from auditledger.adapters.tamper.erasure import owner_run, record_purge_override
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.domain.erasure import require_retention
from auditledger.domain.errors import InvalidArgument

_AGE = re.compile(r"\s*(\d+)\s*([smhdw])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """'30d' -> 30 days; units s, m, h, d, w."""
    match = _AGE.fullmatch(text or "")
    if match is None:
        raise InvalidArgument(
            "older_than", text, "a whole number and a unit: 90s, 15m, 12h, 30d, 2w"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class PurgeResult:
    candidates: int
    purged: int
    cutoff: datetime
    override_id: str | None = None
    """The RetentionOverride recorded, when the purge went below the retention."""


def purge_payloads(
    source: RawLog,
    older_than: timedelta,
    *,
    run_id: str | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    retention: timedelta | None = None,
    override_reason: str | None = None,
) -> PurgeResult:
    """retention: the store URL's retention_days unless given; override_reason: go below it
    (recorded)."""
    now = now or datetime.now(UTC)
    if retention is None:
        retention = timedelta(days=StoreSettings.parse(source.url).retention_days)
    cutoff = now - older_than
    run_hex = _run_hex(run_id) if run_id is not None else None
    newest: dict[str, datetime] = {}
    runs: dict[str, set[str]] = {}
    run_of: dict[str, str] = {}
    for events in source.events():
        for event in events:
            digests = payload_digests(event.state)
            body = json.loads(event.state)
            owner = owner_run(event.topic, event.originator, body)
            if owner is not None:
                run_of[event.originator] = owner
            if not digests:
                continue
            when = datetime.fromisoformat(body["timestamp"]["_data_"])
            run = run_of.get(event.originator, "")
            for digest in digests:
                if digest not in newest or newest[digest] < when:
                    newest[digest] = when
                runs.setdefault(digest, set()).add(run)
    chosen = [
        digest
        for digest, when in newest.items()
        if when < cutoff and (run_hex is None or runs[digest] == {run_hex})
    ]
    override_id = None
    if chosen:
        youngest_age = now - max(newest[digest] for digest in chosen)
        what = f"purge --older-than {older_than}" + ("" if run_id is None else f" --run {run_id}")
        overriding = override_reason is not None
        require_retention(what, youngest_age, retention, overridden=overriding)
        if overriding and youngest_age < retention and not dry_run:
            override_id = record_purge_override(
                source.url,
                run_id=None if run_hex is None else UUID(run_hex),
                reason=str(override_reason),
                retention=retention,
                youngest_age=youngest_age,
                older_than=older_than,
                payload_count=len(chosen),
            )
    purged = 0 if dry_run else SqlPayloadStore(source.payloads_engine).purge(chosen)
    return PurgeResult(
        candidates=len(chosen), purged=purged, cutoff=cutoff, override_id=override_id
    )


def _run_hex(run_id: str) -> str:
    try:
        return UUID(run_id).hex
    except ValueError:
        raise InvalidArgument("run", run_id, "a run id is a UUID") from None
