"""The single-writer rule: a lease file beside the store held by the one ingest process."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from typing import Any

from nowcast import durability

#: the logger name of the ingest pipeline since it was nowcast/ingest.py (log configuration and
#: JSON log consumers key on it)
log = logging.getLogger("nowcast.ingest")


class LockHeld(RuntimeError):
    """Another live ingest process holds the store's writer lock."""


class WriterLock:
    """A lease file ``<store>.ingest.lock`` (beside the store) so that one ingest process writes it.

    The file holds ``{"token", "pid", "host", "heartbeat"}``. A lock is stale when its
    heartbeat is older than ``ttl`` seconds, or when its process is gone on this host; a
    stale lock is taken over. The holder calls :meth:`refresh` (heartbeat) every ``ttl/3``;
    :meth:`refresh` raises :class:`LockHeld` if another process took the lock meanwhile.
    On object storage the lease is one object written through :func:`nowcast.storage.filesystem`
    (credentials, endpoint and timeouts from ``storage_options`` and the ``NOWCAST_S3_*`` /
    ``AWS_*`` variables, so a wrong endpoint fails within the configured timeouts); best
    effort: object stores have no atomic create, so keep one ingest deployment per store.
    """

    def __init__(self, store_url: str, ttl: float = 60.0, storage_options: dict[str, Any] | None = None) -> None:
        from nowcast import storage

        self.store_url = str(store_url).rstrip("/")
        self.url = self.store_url + ".ingest.lock"
        self.ttl = float(ttl)
        self.token = uuid.uuid4().hex
        self._fs, self._path = storage.filesystem(self.url, storage_options)
        from fsspec.implementations.local import LocalFileSystem

        self._local = isinstance(self._fs, LocalFileSystem)
        self.held = False

    def _doc(self) -> bytes:
        return json.dumps({"token": self.token, "pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time()}).encode()

    def _read(self) -> dict[str, Any] | None:
        try:
            with self._fs.open(self._path, "rb") as fh:
                return json.loads(fh.read() or b"{}")
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return {}  # unreadable: treat as stale

    def _stale(self, doc: dict[str, Any]) -> bool:
        if not doc or "heartbeat" not in doc:
            return True
        if time.time() - float(doc["heartbeat"]) > self.ttl:
            return True
        if doc.get("host") == socket.gethostname() and self._local:
            try:
                os.kill(int(doc["pid"]), 0)
            except ProcessLookupError:
                return True
            except (PermissionError, ValueError):
                return False
        return False

    def _write(self) -> None:
        durability.write_atomic(self._path, self._doc(), self._fs)  # one PUT on object storage

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockHeld` naming the holder."""
        if self._local:
            try:
                durability.write_exclusive(self._path, self._doc())
            except FileExistsError:
                pass
            else:
                self.held = True
                return
        doc = self._read()
        if doc is not None and not self._stale(doc) and doc.get("token") != self.token:
            raise LockHeld(
                f"store {self.store_url} is being written by ingest pid {doc.get('pid')} on "
                f"{doc.get('host')} (heartbeat {time.time() - float(doc.get('heartbeat', 0)):.0f} s ago); "
                f"stop it first or wait {self.ttl:g} s for its lease to expire"
            )
        if doc:
            log.warning("taking over stale ingest lock of pid %s on %s", doc.get("pid"), doc.get("host"))
        self._write()
        time.sleep(0.05)  # let a concurrent taker's write land, then check who won
        now = self._read()
        if not now or now.get("token") != self.token:
            raise LockHeld(f"lost the race for the ingest lock of {self.url}")
        self.held = True

    def refresh(self) -> None:
        """Renew the heartbeat; raises :class:`LockHeld` when the lock was taken over."""
        doc = self._read()
        if not doc or doc.get("token") != self.token:
            self.held = False
            raise LockHeld(f"ingest lock {self.url} was taken over by pid {doc.get('pid') if doc else '?'}")
        self._write()

    def release(self) -> None:
        if not self.held:
            return
        doc = self._read()
        if doc and doc.get("token") == self.token:
            try:
                self._fs.rm(self._path)
            except FileNotFoundError:
                pass
        self.held = False

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
