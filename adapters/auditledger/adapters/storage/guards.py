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
