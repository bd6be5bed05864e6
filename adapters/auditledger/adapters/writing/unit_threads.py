"""UnitThreads: the threads AsyncLedger runs its units of work in, reused from unit to unit.

A Ledger's unit of work belongs to the thread that opened it, so each async unit needs a
thread of its own for as long as it is open. Starting a thread blocks the caller (the event
loop) until the new thread runs, which on a busy machine takes milliseconds; so a thread
whose unit has ended goes back to an idle list and the next unit takes it.

Invariants kept here:
- a thread is handed out to one unit at a time;
- a thread goes back to the idle list only once its unit has exited (the unit's exit ran to
  its end, so the Ledger's unit of that thread is closed); otherwise it is shut down;
- at most `keep` threads wait idle; `close()` shuts them down.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor


class UnitThreads:
    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()
        self.closed = False

    def take(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(1, thread_name_prefix="auditledger-unit")

    def give_back(self, thread: ThreadPoolExecutor, *, unit_exited: bool) -> None:
        with self._lock:
            if unit_exited and not self.closed and len(self._idle) < self.keep:
                self._idle.append(thread)
                return
        thread.shutdown(wait=False)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for thread in idle:
            thread.shutdown(wait=False)
