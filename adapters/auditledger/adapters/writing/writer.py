"""One write: the payloads and the events of one or more commands, committed together.

Payload bytes are committed no later than the events that reference them: on PostgreSQL and
SQLite in the same transaction (the payload table is in the events' database), elsewhere
(memory, or a SQLite directory from before that layout) in one batched insert just before
the events' transaction (a payload whose events are then refused is a harmless,
content-addressed orphan). The events of one write are one transaction: all or nothing.
A write may carry read guards (storage/guards.py): the recorder refuses it, like a version
conflict, when an aggregate a command relied on was closed after it was read.
The library's Application.save is bypassed on purpose: it checks runtime protocols on every
object and notifies no one we use; the mapper and the recorder are the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent

from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.storage.event_store import LedgerApplication
from auditledger.adapters.storage.guards import Guard
from auditledger.adapters.storage.payloads import PayloadStore
from auditledger.domain.errors import StoreError


class EventWriter:
    def __init__(self, app: LedgerApplication, payloads: PayloadStore) -> None:
        self.app = app
        self.payloads = payloads
        # our recorders (pg_recorder, sqlite_recorder) say whether they take the payloads
        self._payloads_in_transaction = bool(getattr(app.recorder, "holds_payloads", False))

    @property
    def payloads_in_transaction(self) -> bool:
        """Whether a write's payloads commit in its events' transaction (else just before)."""
        return self._payloads_in_transaction

    def stored(self, events: Iterable[Any]) -> list[StoredEvent]:
        to_stored = self.app.mapper.to_stored_event
        return [to_stored(event) for event in events]

    def collect(self, aggregates: Iterable[Aggregate]) -> list[StoredEvent]:
        """Takes the pending events of the aggregates, in order, as stored events."""
        return self.stored(
            event for aggregate in aggregates for event in aggregate.collect_events()
        )

    def write(
        self,
        stored: Sequence[StoredEvent],
        payloads: Sequence[Payload],
        guards: Sequence[Guard] = (),
    ) -> None:
        """Commits; IntegrityError when another writer got to a version first or a guard
        failed (nothing written), StoreError when the store fails otherwise (locked,
        unreachable, dropped)."""
        try:
            self._write(stored, payloads, guards)
        except IntegrityError:
            if self._landed(stored):
                return
            raise
        except PersistenceError as error:
            raise StoreError(f"writing {len(stored)} events to the event store: {error}") from None

    def _landed(self, stored: Sequence[StoredEvent]) -> bool:
        """Whether exactly these events are already in the log.

        The recorder retries a write whose connection broke; when the first try had in fact
        committed, the retry conflicts with its own events. Treating that as a conflict would
        make the Ledger run the command again and record the same call twice. Event bytes
        carry a microsecond timestamp, so another writer's event never matches ours.
        """
        select = self.app.recorder.select_events
        for event in stored:
            found = select(
                event.originator_id,
                gt=event.originator_version - 1,
                lte=event.originator_version,
            )
            if not found or (found[0].topic, bytes(found[0].state)) != (
                event.topic,
                bytes(event.state),
            ):
                return False
        return True

    def _write(
        self,
        stored: Sequence[StoredEvent],
        payloads: Sequence[Payload],
        guards: Sequence[Guard],
    ) -> None:
        if not stored:
            self.payloads.put_many(payloads)
            return
        checks: dict[str, Any] = {"guards": guards} if guards else {}
        if self._payloads_in_transaction:
            self.app.recorder.insert_events(stored, payloads=payloads, **checks)
            return
        self.payloads.put_many(payloads)
        self.app.recorder.insert_events(stored, **checks)
