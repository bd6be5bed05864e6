"""Group commit: concurrent callers' writes share one transaction, each still durable on return.

A caller queues its write and waits. If no commit is running, it becomes the leader: it takes
everything queued and commits it as one write; whoever queued meanwhile is taken by the next
leader. So a commit carries as many callers as arrived during the previous one, with no timer
and no background thread, and submit() returns only after the caller's events are committed.

When a shared commit is refused (a version taken by another process, or a read guard of
one of its writes failed), nothing of it was
written: each write is then committed on its own, so only the callers that really conflict
get the IntegrityError (and re-run their command from a fresh load); the others succeed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventsourcing.persistence import IntegrityError, StoredEvent

from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.storage.guards import Guard

Write = Callable[[Sequence[StoredEvent], Sequence[Payload], Sequence[Guard]], None]


@dataclass(eq=False)
class _Pending:
    stored: Sequence[StoredEvent]
    payloads: Sequence[Payload]
    guards: Sequence[Guard] = ()
    done: bool = False
    error: BaseException | None = None


class GroupCommitter:
    def __init__(self, write: Write, *, max_events: int = 5000) -> None:
        self._write = write
        self._max_events = max_events
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._leading = False
        self.commits = 0
        self.writes = 0

    @property
    def waiting(self) -> int:
        """How many submitted writes wait for the next commit."""
        with self._cond:
            return len(self._queue)

    def submit(
        self,
        stored: Sequence[StoredEvent],
        payloads: Sequence[Payload],
        guards: Sequence[Guard] = (),
    ) -> None:
        pending = _Pending(stored, payloads, guards)
        with self._cond:
            self._queue.append(pending)
        while True:
            with self._cond:
                while self._leading and not pending.done:
                    self._cond.wait()
                if pending.done:
                    break
                self._leading = True
                batch = self._take()
            try:
                self._commit(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if pending.error is not None:
            raise pending.error

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        events = 0
        while self._queue and (
            not batch or events + len(self._queue[0].stored) <= self._max_events
        ):
            item = self._queue.pop(0)
            batch.append(item)
            events += len(item.stored)
        return batch

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            self._write(
                [event for item in batch for event in item.stored],
                [payload for item in batch for payload in item.payloads],
                [guard for item in batch for guard in item.guards],
            )
            self.commits += 1
        except IntegrityError as error:
            if len(batch) == 1:
                batch[0].error = error
            else:
                self._commit_one_by_one(batch)
        except BaseException as error:  # the store is down: every caller learns it
            for item in batch:
                item.error = error
        finally:
            self.writes += len(batch)
            for item in batch:
                item.done = True

    def _commit_one_by_one(self, batch: list[_Pending]) -> None:
        for item in batch:
            try:
                self._write(item.stored, item.payloads, item.guards)
                self.commits += 1
            except IntegrityError as error:
                item.error = error
            except BaseException as error:
                item.error = error
