"""The eventsourcing Application that owns the event log, and how its errors are translated.

A version conflict (IntegrityError) passes through: the Ledger retries it. Any other failure
of the store (a locked SQLite file, a dropped PostgreSQL connection, a missing database)
becomes a StoreError naming what was being done, never a raw library traceback.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import Application, Repository
from eventsourcing.persistence import IntegrityError, PersistenceError, Recording, Transcoder

import auditledger.domain  # noqa: F401  (registers every explicit event topic)
from auditledger.adapters.storage.transcoder import LedgerTranscoder
from auditledger.domain.errors import StoreError


class LedgerRepository(Repository[UUID]):
    def get(self, aggregate_id: UUID, **kwargs: Any) -> Any:
        try:
            return super().get(aggregate_id, **kwargs)
        except PersistenceError as error:
            raise StoreError(f"reading {aggregate_id} from the event store: {error}") from None


class LedgerApplication(Application[UUID]):
    name = "auditledger"

    def construct_transcoder(self) -> Transcoder:
        transcoder = LedgerTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def construct_repository(self) -> Repository[UUID]:
        return LedgerRepository(event_store=self.events, snapshot_store=self.snapshots)

    def has_events(self, aggregate_id: UUID) -> bool:
        """Whether anything was ever recorded under this id."""
        try:
            return bool(self.recorder.select_events(aggregate_id, limit=1))
        except PersistenceError as error:
            raise StoreError(f"reading {aggregate_id} from the event store: {error}") from None

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        try:
            return super().save(*objs, **kwargs)
        except IntegrityError:
            raise
        except PersistenceError as error:
            raise StoreError(f"writing to the event store: {error}") from None
