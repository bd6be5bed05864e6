"""Purge: delete payload bytes past retention; the hashes, the events and the chain stay.

A payload is purged only when every event that names it is older than the cutoff, and, with
a run given, when every such event belongs to that run (content-addressed bytes shared with
another run are kept). Payloads no event names (orphans) are left alone. Afterwards verify
reports those payloads as purged, not tampered, and every chain hash still checks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auditledger.adapters.storage.payloads import SqlPayloadStore
from auditledger.adapters.tamper.chain_format import payload_digests
from auditledger.adapters.tamper.raw_log import RawLog
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


def purge_payloads(
    source: RawLog,
    older_than: timedelta,
    *,
    run_id: str | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PurgeResult:
    cutoff = (now or datetime.now(UTC)) - older_than
    run_hex = _run_hex(run_id) if run_id is not None else None
    newest: dict[str, datetime] = {}
    runs: dict[str, set[str]] = {}
    run_of: dict[str, str] = {}
    for events in source.events():
        for event in events:
            digests = payload_digests(event.state)
            body = json.loads(event.state)
            owner = _owner_run(event.topic, event.originator, body)
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
    purged = 0 if dry_run else SqlPayloadStore(source.payloads_engine).purge(chosen)
    return PurgeResult(candidates=len(chosen), purged=purged, cutoff=cutoff)


def _owner_run(topic: str, originator: str, body: dict[str, object]) -> str | None:
    if topic.startswith("auditledger:Run."):
        return originator.replace("-", "")
    run = body.get("run_id")
    if isinstance(run, dict) and isinstance(run.get("_data_"), str):
        return str(run["_data_"]).replace("-", "")
    return None


def _run_hex(run_id: str) -> str:
    from uuid import UUID

    try:
        return UUID(run_id).hex
    except ValueError:
        raise InvalidArgument("run", run_id, "a run id is a UUID") from None
