"""The in-memory event recorder, with read guards (guards.py) checked under its lock, and
the factory that gives it to the Application (the library's POPO factory takes no recorder
topic, so settings name this factory instead of the module)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder, POPOFactory

from auditledger.adapters.storage.guards import ReadGuard


class LedgerPOPORecorder(POPOApplicationRecorder):
    def _insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        guards: Sequence[ReadGuard] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        with self._database_lock:
            for guard in guards:
                later = self.select_events(guard.aggregate_id, gt=guard.version)
                if any(event.topic in guard.closing_topics for event in later):
                    raise IntegrityError(guard.refusal())
            return super()._insert_events(stored_events, **kwargs)


class LedgerPOPOFactory(POPOFactory):
    def application_recorder(self) -> ApplicationRecorder:
        return LedgerPOPORecorder()
