"""Bounded, thread-safe LRU caches for the API.

Responses and decoded fields are cached under keys that include the store versions
(``ObservationStore.version`` / ``ForecastStore.version``): when a new frame or run is
published the version changes, the old entries stop matching and age out of the LRU, so a
new frame is never hidden behind a stale entry. Nothing is cached without a bound.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """A bounded least-recently-used mapping with hit/miss counters.

    Bounded by ``max_items`` and, when given, by ``max_bytes`` (sizes from :func:`nbytes`:
    numpy arrays, bytes and tuples of them); the newest entry is always kept.
    """

    def __init__(self, max_items: int, max_bytes: int | None = None) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._sizes: dict[Hashable, int] = {}
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return None

    def put(self, key: Hashable, value: V) -> None:
        size = nbytes(value) if self.max_bytes is not None else 0
        with self._lock:
            self.nbytes -= self._sizes.pop(key, 0)
            self._data[key] = value
            self._data.move_to_end(key)
            self._sizes[key] = size
            self.nbytes += size
            while len(self._data) > self.max_items or (
                self.max_bytes is not None and self.nbytes > self.max_bytes and len(self._data) > 1
            ):
                old, _ = self._data.popitem(last=False)
                self.nbytes -= self._sizes.pop(old, 0)

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value of ``key``, computing and storing it on a miss (compute runs unlocked)."""
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._sizes.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data


def nbytes(value: object) -> int:
    """Approximate size in bytes of a cached value (arrays, bytes, tuples/lists of them)."""
    if isinstance(value, bytes | bytearray):
        return len(value)
    n = getattr(value, "nbytes", None)
    if isinstance(n, int):
        return n
    if isinstance(value, tuple | list):
        return sum(nbytes(v) for v in value)
    return 0
