"""A small thread-safe LRU of aggregates this process has just read or written.

An aggregate is *taken* out while a command runs on it and put back only after its events
were saved, so two threads never share one object. A stale entry is harmless: saving from
it conflicts on version, and the Ledger then reloads from the store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

T = TypeVar("T")


class AggregateCache:
    def __init__(self, maxsize: int = 4096) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[UUID, Any] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, aggregate_id: UUID) -> Any | None:
        with self._lock:
            return self._items.pop(aggregate_id, None)

    def look(self, aggregate_id: UUID, at: Callable[[Any], T]) -> T | None:
        """`at(entry)` under the lock, the entry left in place (None when absent): no command
        runs on an entry (commands take it out first), so what `at` sees is consistent."""
        with self._lock:
            item = self._items.get(aggregate_id)
            return None if item is None else at(item)

    def put(self, aggregate: Any) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._items[aggregate.id] = aggregate
            self._items.move_to_end(aggregate.id)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def discard(self, aggregate_id: UUID) -> None:
        with self._lock:
            self._items.pop(aggregate_id, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
