"""CommandBatcher: one writer thread runs queued commands back to back and commits each batch
of them in one unit of work, so concurrent callers share commits without sharing a lock.

Invariants kept here:
- a command's future is answered only after the commit that holds its events (or with its
  own typed error, having written nothing); a command whose future was cancelled before
  its batch started never runs;
- commands of a batch do not depend on each other: a refused command (a LedgerError) is
  answered with its error and the rest of the batch commits; a command that meets a unit
  conflict is re-run on its own after the batch;
- if the batch cannot commit (another process got there first, a duplicate create found at
  commit, any other exception in a command), nothing of it was written and every command of
  it is re-run on its own, one commit each, so each caller gets its own outcome;
- one thread only: commands never contend with each other for the interpreter lock.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from auditledger.domain.errors import InvalidArgument, LedgerError, UnitConflict

OpenUnit = Callable[[], AbstractContextManager[object]]


@dataclass(eq=False)
class _Job:
    function: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: Future[Any] = field(default_factory=Future)


class _Abandon(Exception):
    """A command failed in a way that may have left the unit's copies half changed."""


class CommandBatcher:
    def __init__(self, open_unit: OpenUnit, *, max_batch: int = 256) -> None:
        self._open_unit = open_unit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="auditledger-writer", daemon=True)
        self._thread.start()
        self._lock = threading.Lock()
        self.closed = False
        self.batches = 0
        self.commands = 0

    def submit(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        job = _Job(function, args, kwargs)
        with self._lock:
            if self.closed:
                raise InvalidArgument("ledger", "closed", "the ledger is closed; open it again")
            self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Run what is queued, then stop the writer thread."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._queue.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._run([j for j in batch if j.future.set_running_or_notify_cancel()])
            if stop:
                return

    def _run(self, batch: list[_Job]) -> None:
        self.commands += len(batch)
        if len(batch) == 1:
            self._alone(batch[0])
            return
        answers: list[tuple[_Job, BaseException | None, Any]] = []
        later: list[_Job] = []
        try:
            with self._open_unit():
                for job in batch:
                    try:
                        result = job.function(*job.args, **job.kwargs)
                    except UnitConflict:
                        later.append(job)
                    except LedgerError as refused:  # validated before any event: nothing changed
                        answers.append((job, refused, None))
                    except BaseException as failure:
                        raise _Abandon() from failure
                    else:
                        answers.append((job, None, result))
        except BaseException:  # nothing of the batch was written: each runs on its own
            answers, later = [], batch
        else:
            self.batches += 1
        for job, refusal, result in answers:
            if refusal is not None:
                job.future.set_exception(refusal)
            else:
                job.future.set_result(result)
        for job in later:
            self._alone(job)

    def _alone(self, job: _Job) -> None:
        try:
            result = job.function(*job.args, **job.kwargs)
        except BaseException as error:
            job.future.set_exception(error)
        else:
            self.batches += 1
            job.future.set_result(result)
