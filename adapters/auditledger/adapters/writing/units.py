"""How the Ledger's commands reach the store: one commit each, a unit of work, or group commit.

`with ledger.unit_of_work():` collects the commands of this thread and commits all their
events (and payloads) in one transaction when the block ends; an exception in the block
writes nothing. Inside the unit, commands see each other's effects (a call index counts the
unit's earlier calls; a batch can link a state the unit opened).

Version conflicts. Values a unit has already returned (call indices, ordinals) must never
change silently, so a unit is never re-run behind the caller's back:
- inside one process, a unit holds the write lock of every aggregate it changed until it
  ends, so other threads' commands on them wait for it (see locks.py: units never
  deadlock; a younger unit that meets an older one dies at once with UnitConflict);
- a conflict with another process (it committed to a touched aggregate first) refuses the
  whole commit: nothing is written and UnitConflict (retryable) names the aggregates.
  The caller runs the unit again; its new values come from the store as it now is.
A command that checked another aggregate it does not change (the run of a state it opens,
the state a batch links to) relies on that check: the commit carries a read guard, and if
that aggregate was closed in between, nothing is written and the unit raises the error the
command would now get (RunClosed, InvalidLink), else UnitConflict.
Creating an aggregate the unit already created is refused at the command; one that already
exists in the store is found when the unit commits (the store's unique version refuses it):
the unit then raises that command's own error (DuplicateAttempt and friends) and writes
nothing. Checks read the store once per unit (the run of each new state is read once).

The write path itself (load -> command -> save, and the above) is write_path.py.

Group commit (`Ledger.open(url, group_commit=True)`): a single command still returns only
after its events are committed, but concurrent commands share commits (group_commit.py).
A single command that loses a race was never answered, so it is simply re-run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.storage.guards import Guard
from auditledger.adapters.writing.locks import LockOwner
from auditledger.domain.errors import LedgerError


class StaleCopy(Exception):
    """The copy is behind the store: reload and run the command again."""


class StaleRead(Exception):
    """Another aggregate a command checked was closed before its write: run it again."""


class UnitOfWork:
    """What one open unit changed: its aggregates (locked), events in command order, payloads."""

    def __init__(self) -> None:
        self.owner = LockOwner(unit=True)
        self.aggregates: dict[UUID, Aggregate] = {}
        self.fresh: set[UUID] = set()
        self.changed: set[UUID] = set()
        self.locked: list[UUID] = []
        self.events: list[Any] = []
        self.payloads: list[Payload] = []
        self.created: dict[UUID, Callable[[], LedgerError]] = {}
        self.reads: dict[UUID, Aggregate] = {}
        self.guards: dict[tuple[type, UUID], Guard] = {}  # one guard of each kind per aggregate
        self.rechecks: list[Callable[[], object]] = []

    def rely_on(self, guards: Sequence[Guard], recheck: Callable[[], object] | None) -> None:
        """A command's checks of aggregates it read: guarded at commit, re-run if refused."""
        for guard in guards:
            self.guards.setdefault((type(guard), guard.aggregate_id), guard)
        if guards and recheck is not None:
            self.rechecks.append(recheck)

    @property
    def event_count(self) -> int:
        return len(self.events)
