"""Bounded, thread-safe LRU caches for the API.

Responses and decoded fields are cached under keys that include the store versions
(``ObservationStore.version`` / ``ForecastStore.version``): when a new frame or run is
published the version changes, the old entries stop matching and age out of the LRU, so a
new frame is never hidden behind a stale entry. Nothing is cached without a bound.

Rendered responses are kept as :class:`CachedBody` (bytes plus their ETag and Last-Modified),
so a cache hit answers without re-encoding anything, and a matching conditional request
(:func:`not_modified`) gets a 304.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
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
        #: keys being computed by :meth:`get_or_compute`, set when done
        self._pending: dict[Hashable, threading.Event] = {}
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
        """The cached value of ``key``, computing and storing it on a miss (compute runs unlocked).

        One computation per key at a time: threads asking for a key being computed wait for it
        (after a new frame, many requests need the same decoded field or stack at once); when it
        fails, its error goes to its own caller and the next waiter computes it.
        """
        while True:
            value = self.get(key)
            if value is not None:
                return value
            with self._lock:
                pending = self._pending.get(key)
                mine = pending is None
                if mine:
                    pending = self._pending[key] = threading.Event()
            assert pending is not None
            if not mine:
                pending.wait()
                continue
            try:
                value = compute()
                self.put(key, value)
                return value
            finally:
                with self._lock:
                    self._pending.pop(key, None)
                pending.set()

    def keys(self) -> list[Hashable]:
        """The keys, least recently used first (a copy)."""
        with self._lock:
            return list(self._data)

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
    if isinstance(value, CachedBody):
        return len(value.body)
    n = getattr(value, "nbytes", None)
    if isinstance(n, int):
        return n
    if isinstance(value, tuple | list):  # e.g. a stored response (versions, headers, body, ...)
        return sum(nbytes(v) for v in value)
    return 0


# -- HTTP validators of cached bodies ---------------------------------------------------------


@dataclass(frozen=True)
class CachedBody:
    """A response body rendered once, with its validators.

    ``etag`` is a strong validator computed from the bytes (identical bodies rendered by
    several workers get the same tag, so a CDN in front of them revalidates consistently);
    ``last_modified`` is an HTTP-date (RFC 9110) or None.
    """

    body: bytes
    media_type: str
    etag: str
    last_modified: str | None = None

    @classmethod
    def of(cls, body: bytes, media_type: str, modified: float | None = None) -> CachedBody:
        """Wrap ``body``; ``modified`` (POSIX seconds, UTC) becomes the Last-Modified header."""
        return cls(body, media_type, etag_of(body), http_date(modified) if modified is not None else None)

    @property
    def nbytes(self) -> int:
        return len(self.body)


def etag_of(body: bytes) -> str:
    """A strong ETag (quoted) of ``body``: 128-bit BLAKE2b of the bytes."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def http_date(posix_seconds: float) -> str:
    """``posix_seconds`` as an IMF-fixdate (``Sun, 01 Jun 2025 12:00:00 GMT``)."""
    return formatdate(posix_seconds, usegmt=True)


def not_modified(if_none_match: str | None, if_modified_since: str | None, etag: str, last_modified: str | None) -> bool:
    """True when a GET with these request validators may be answered 304 (RFC 9110 section 13).

    ``If-None-Match`` takes precedence: weak comparison against ``etag`` (``*`` matches any).
    Otherwise ``If-Modified-Since`` matches when ``last_modified`` is not later than it.
    """
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        tag = etag.removeprefix("W/")
        return any(t.strip().removeprefix("W/") == tag for t in if_none_match.split(","))
    if if_modified_since is None or last_modified is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
        modified = parsedate_to_datetime(last_modified)
    except (TypeError, ValueError, IndexError):
        return False  # an unparseable date is ignored (RFC 9110 13.1.3)
    if since.tzinfo is None or modified.tzinfo is None:
        return False
    return modified <= since
