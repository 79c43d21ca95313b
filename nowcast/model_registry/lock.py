"""Lock files with expiry in a registry (``retrain.lock``, the short ``status.lock``)."""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

import pandas as pd

from nowcast.model_registry.backend import _Storage
from nowcast.model_registry.base import LockHeldError, RegistryError, _iso, now_utc

log = logging.getLogger(__name__)


@dataclass
class LockInfo:
    """Contents of a lock file."""

    owner: str
    pid: int
    host: str
    acquired: str
    expires: str
    token: str

    def expired(self, at: pd.Timestamp | None = None) -> bool:
        return pd.Timestamp(self.expires) <= (at or now_utc())

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LockInfo:
        d = json.loads(data)
        return cls(**{k: d[k] for k in ("owner", "pid", "host", "acquired", "expires", "token")})


class RegistryLock:
    """A lock file with expiry: ``<registry>/<name>`` holding owner, pid, host and expiry time.

    Created atomically (:func:`nowcast.durability.write_exclusive`: hard link locally, conditional PUT on S3 where supported, else
    check-then-put: best effort). A lock whose expiry has passed is stale and is broken by the
    next acquirer (rename to a unique name first, so two breakers cannot both win locally).
    Use as a context manager; :meth:`refresh` extends a long job's lease.
    """

    def __init__(self, storage: _Storage, name: str, ttl: pd.Timedelta, owner: str | None = None) -> None:
        self._s = storage
        self.name = name
        self.ttl = pd.Timedelta(ttl)
        self.owner = owner or f"{getpass.getuser()}@{socket.gethostname()}"
        self.info: LockInfo | None = None

    def _new_info(self) -> LockInfo:
        t = now_utc()
        return LockInfo(self.owner, os.getpid(), socket.gethostname(), _iso(t), _iso(t + self.ttl), uuid.uuid4().hex)

    def read(self) -> LockInfo | None:
        """The current holder, or None when unlocked (an unreadable lock counts as expired)."""
        try:
            data = self._s.read_bytes(self.name)
        except FileNotFoundError:
            return None
        try:
            return LockInfo.from_bytes(data)
        except (ValueError, KeyError, TypeError):
            return LockInfo("unknown (unreadable lock)", 0, "", "", _iso(pd.Timestamp(0, tz="UTC")), "")

    def acquire(self) -> LockInfo:
        """Take the lock or raise :class:`LockHeldError` naming the holder."""
        for _ in range(50):
            info = self._new_info()
            try:
                self._s.write_exclusive(self.name, info.to_json())
                self.info = info
                log.info("acquired %s (expires %s)", self._s.describe(self.name), info.expires)
                return info
            except FileExistsError:
                holder = self.read()
                if holder is None:
                    continue  # released meanwhile
                if not holder.expired():
                    raise LockHeldError(
                        f"{self._s.describe(self.name)} is held by {holder.owner} (pid {holder.pid} on "
                        f"{holder.host or '?'}) until {holder.expires}"
                    ) from None
                self._break_stale(holder)
        raise LockHeldError(f"{self._s.describe(self.name)}: could not acquire (contended)")

    def _break_stale(self, holder: LockInfo) -> None:
        """Remove the stale lock ``holder`` under a short-lived breaker mutex.

        Only the job holding ``<lock>.break`` (created exclusively) may delete the lock, and
        only if it still carries the stale token; the lock itself is then re-taken by
        exclusive creation, so exactly one contender wins. A breaker mutex left by a crashed
        job is ignored after a minute.
        """
        breaker = f"{self.name}.break"
        try:
            self._s.write_exclusive(breaker, json.dumps({"created": _iso(now_utc())}).encode())
        except FileExistsError:
            try:
                created = pd.Timestamp(json.loads(self._s.read_bytes(breaker))["created"])
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                return
            if now_utc() - created > pd.Timedelta(minutes=1):
                with contextlib.suppress(FileNotFoundError, OSError):
                    self._s.remove(breaker)
            time.sleep(0.01)  # another job is breaking it: look again shortly
            return
        try:
            current = self.read()
            if current is not None and current.token == holder.token and current.expired():
                log.warning("breaking stale lock %s of %s (expired %s)", self.name, holder.owner, holder.expires)
                self._s.remove(self.name)
        finally:
            with contextlib.suppress(FileNotFoundError, OSError):
                self._s.remove(breaker)

    def refresh(self) -> None:
        """Extend the expiry of a lock we hold."""
        if self.info is None:
            raise RegistryError(f"{self.name}: not held")
        current = self.read()
        if current is None or current.token != self.info.token:
            raise LockHeldError(f"{self._s.describe(self.name)}: lost the lock (taken over after expiry)")
        info = LockInfo(**{**self.info.__dict__, "expires": _iso(now_utc() + self.ttl)})
        self._s.write_atomic(self.name, info.to_json())
        self.info = info

    def release(self) -> None:
        """Remove the lock if we still hold it."""
        if self.info is None:
            return
        current = self.read()
        if current is not None and current.token == self.info.token:
            self._s.remove(self.name)
        else:
            log.warning("%s was taken over by another job; not removing it", self.name)
        self.info = None

    def __enter__(self) -> RegistryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
