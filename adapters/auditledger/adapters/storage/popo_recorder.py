"""The in-memory event recorder, with read and log guards (guards.py) checked under its lock, and
the factory that gives it to the Application (the library's POPO factory takes no recorder
topic, so settings name this factory instead of the module)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder, POPOFactory

from auditledger.adapters.storage.guards import Guard, LogGuard


class LedgerPOPORecorder(POPOApplicationRecorder):
    def _insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        guards: Sequence[Guard] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        with self._database_lock:
            for guard in guards:
                if isinstance(guard, LogGuard):
                    if self._log_guard_fails(guard, stored_events):
                        raise IntegrityError(guard.refusal())
                    continue
                later = self.select_events(guard.aggregate_id, gt=guard.version)
                if any(event.topic in guard.closing_topics for event in later):
                    raise IntegrityError(guard.refusal())
            return super()._insert_events(stored_events, **kwargs)

    def _log_guard_fails(self, guard: LogGuard, writing: Sequence[StoredEvent]) -> bool:
        """Whether an event after the guard's position (notification id = index + 1), or
        one this write records (the other recorders check after their inserts), has one of
        its topics and its needle: read under the lock, so no writer is in between."""
        later = [*self._stored_events[guard.after :], *writing]
        return any(e.topic in guard.opening_topics and guard.needle in e.state for e in later)


class LedgerPOPOFactory(POPOFactory):
    def application_recorder(self) -> ApplicationRecorder:
        return LedgerPOPORecorder()
