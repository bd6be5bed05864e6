"""A read another aggregate's command relied on, checked again inside the write transaction.

A command that reads one aggregate and writes another (open_state reads the run, link_batch
reads the state) is only right if what it read still holds when its events commit. The write
carries a ReadGuard: "no event of these topics was recorded for this aggregate after this
version". Each recorder checks it where writers are already serialised (SQLite's write lock,
PostgreSQL's table lock, the in-memory recorder's lock) and refuses the whole write with an
IntegrityError if it fails, exactly as for a version conflict: nothing is written and the
Ledger re-runs the command against the store as it now is.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class ReadGuard:
    aggregate_id: UUID
    version: int
    closing_topics: tuple[str, ...]

    def refusal(self) -> str:
        return (
            f"aggregate {self.aggregate_id} recorded one of {list(self.closing_topics)} "
            f"after version {self.version}, which a command in this write relied on"
        )


@dataclass(frozen=True)
class LogGuard:
    """A read of the landscape a command relied on: "no event recorded after log position
    `after` has one of these topics and names this aggregate" (complete_run: no state,
    operation or batch of the run opened since the landscape it asked was caught up).

    `needle` is the exact bytes a matching event's stored state holds (the transcoder's
    `"run_id":{...}` for the aggregate's id); `aggregate_id` and `version` name an event that
    exists (the PostgreSQL recorder refuses the transaction by inserting it again)."""

    aggregate_id: UUID
    version: int
    after: int
    opening_topics: tuple[str, ...]
    needle: bytes

    def refusal(self) -> str:
        return (
            f"an event of {list(self.opening_topics)} naming {self.aggregate_id} was recorded "
            f"after log position {self.after}, which a command in this write relied on"
        )


Guard = ReadGuard | LogGuard
