"""The single-writer rule: a lease file beside the store held by the one ingest process.

:class:`WriterLock` is :class:`nowcast.durability.Lease` with the ingest file name, messages and
exception; the lease logic (expiry, dead-pid staleness, breaking, refresh, release) is there.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from nowcast import durability
from nowcast.durability import Lease, LeaseHeld, LeaseInfo

#: the logger name of the ingest pipeline since it was nowcast/ingest.py (log configuration and
#: JSON log consumers key on it)
log = logging.getLogger("nowcast.ingest")


class LockHeld(LeaseHeld):
    """Another live ingest process holds the store's writer lock."""


class WriterLock(Lease):
    """A lease file ``<store>.ingest.lock`` (beside the store) so that one ingest process writes it.

    The file is a :class:`nowcast.durability.LeaseInfo` (owner, pid, host, acquired, expires,
    token, heartbeat). A lock is stale once its expiry (its holder's ``ttl`` after the last
    heartbeat) has passed, or when its process is gone on this host; a stale lock is taken over.
    The holder calls :meth:`refresh` (heartbeat) every ``ttl/3``; :meth:`refresh` raises
    :class:`LockHeld` if another process took the lock meanwhile. On object storage the lease
    is one object written through :func:`nowcast.storage.filesystem` (credentials, endpoint and
    timeouts from ``storage_options`` and the ``NOWCAST_S3_*`` / ``AWS_*`` variables, so a wrong
    endpoint fails within the configured timeouts); best effort: a conditional PUT where the
    store supports it, else check-then-put verified by a re-read, so keep one ingest deployment
    per store.
    """

    error = LockHeld

    def __init__(self, store_url: str, ttl: float = 60.0, storage_options: dict[str, Any] | None = None) -> None:
        from nowcast import storage

        self.store_url = str(store_url).rstrip("/")
        self.url = self.store_url + ".ingest.lock"
        self.ttl = float(ttl)
        fs, path = storage.filesystem(self.url, storage_options)
        # legacy_ttl: a lease written before leases carried their expiry (heartbeat only)
        super().__init__(durability.FsLeaseStorage(fs), path, self.ttl, owner=f"ingest of {self.store_url}", legacy_ttl=self.ttl)

    def held_message(self, holder: LeaseInfo) -> str:
        beat = holder.heartbeat or holder.expires_at().timestamp() - self.ttl
        remaining = max(0.0, holder.expires_at().timestamp() - time.time())
        return (
            f"store {self.store_url} is being written by ingest pid {holder.pid} on "
            f"{holder.host or '?'} (heartbeat {time.time() - beat:.0f} s ago); "
            f"stop it first or wait {remaining:.0f} s for its lease to expire"
        )

    def lost_message(self, current: LeaseInfo | None) -> str:
        return f"ingest lock {self.url} was taken over by pid {current.pid if current else '?'}"

    def contended_message(self) -> str:
        return f"lost the race for the ingest lock of {self.url}"

    def break_message(self, holder: LeaseInfo) -> str:
        return f"taking over stale ingest lock of pid {holder.pid} on {holder.host or '?'}"

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self
