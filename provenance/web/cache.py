"""A small thread-safe LRU for finished answers (pages, charts, exports).

A value may be stored with the object it was made from (`source`) and is then
only returned for that same object: keys may hold `id()`s, and an id can be
reused once its object is gone, so the source check makes a stale hit
impossible. Keys made only of values need no source.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[Hashable, tuple[object, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], V], source: object = None) -> V:
        """The value for *key* made from *source*, making it (outside the lock)
        when absent. Two threads may both make it; the second one's wins."""
        with self._lock:
            found = self._items.get(key)
            if found is not None and (source is None or found[0] is source):
                self._items.move_to_end(key)
                return found[1]
        value = make()
        with self._lock:
            self._items[key] = (source, value)  # holding source keeps its id unique
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def put(self, key: Hashable, value: V) -> None:
        """Keep *value* for *key* (without a source)."""
        with self._lock:
            self._items[key] = (None, value)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def peek(self, key: Hashable) -> V | None:
        """The value for *key* if there is one (kept without a source), else None."""
        with self._lock:
            found = self._items.get(key)
            if found is None or found[0] is not None:
                return None
            self._items.move_to_end(key)
            return found[1]

    def __len__(self) -> int:
        return len(self._items)
