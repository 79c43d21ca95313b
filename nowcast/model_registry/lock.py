"""Lock files with expiry in a registry (``retrain.lock``, the short ``status.lock``).

:class:`RegistryLock` is :class:`nowcast.durability.Lease` on the registry storage with the
registry's messages and :class:`LockHeldError`; :class:`LockInfo` is the lease document.
"""

from __future__ import annotations

import pandas as pd

from nowcast.durability import Lease, LeaseInfo
from nowcast.model_registry.backend import _Storage
from nowcast.model_registry.base import LockHeldError, RegistryError

#: contents of a lock file (owner, pid, host, acquired, expires, token, heartbeat)
LockInfo = LeaseInfo


class RegistryLock(Lease):
    """A lock file with expiry: ``<registry>/<name>`` holding owner, pid, host and expiry time.

    Created atomically (:func:`nowcast.durability.write_exclusive`: hard link locally,
    conditional PUT on S3 where supported, else check-then-put verified by a re-read: best
    effort). A lock whose expiry has passed is stale and is broken by the next acquirer under
    the ``<name>.break`` mutex, then re-created exclusively, so of two breakers one wins. Use
    as a context manager; :meth:`refresh` extends a long job's lease. Unlike the ingest lease
    a registry lock is not broken early when its pid is gone (it may be on a shared volume).
    """

    error = LockHeldError

    def __init__(self, storage: _Storage, name: str, ttl: pd.Timedelta, owner: str | None = None) -> None:
        self._s = storage
        self.ttl = pd.Timedelta(ttl)
        super().__init__(storage, name, self.ttl.total_seconds(), owner, pid_check=False)

    def lost_message(self, current: LockInfo | None) -> str:
        return f"{self._s.describe(self.name)}: lost the lock (taken over after expiry)"

    def break_message(self, holder: LockInfo) -> str:
        return f"breaking stale lock {self.name} of {holder.owner} (expired {holder.expires})"

    def refresh(self) -> LockInfo:
        """Extend the expiry of a lock we hold; :class:`LockHeldError` when it was taken over."""
        if self.info is None:
            raise RegistryError(f"{self.name}: not held")
        return super().refresh()

    def __enter__(self) -> RegistryLock:
        self.acquire()
        return self
