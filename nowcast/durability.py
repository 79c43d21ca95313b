"""Durability primitives: atomic replace, exclusive create, the remote check, named crash points.

:func:`write_atomic` replaces one file (local) or one object (object storage) so that a
reader, or a process restarted after a SIGKILL or a power cut, sees either the old content or
the new one, never a mix. Locally the bytes go to a temporary file beside the target (named
``<name>`` + :data:`TMP_INFIX` + random hex), are fsynced, and the temporary is renamed over
the target (``os.replace``: atomic on POSIX), then the directory is fsynced. On object storage
one PUT replaces an object whole. The stores write every marker they depend on through this
function, so their crash safety does not rest on how a third-party library writes files.
:func:`atomic_path` is the same replace for writers that need a path (``torch.save``,
``to_netcdf``, file copies). :func:`write_exclusive` creates a file only when it does not exist
(a fsynced temporary hard-linked to the target locally: complete content or nothing; a
conditional PUT on object storage where the file system supports it). :func:`is_remote` tells
object-storage URLs from local paths.

:func:`crash_point` marks one write step of a multi-step operation. It does nothing unless the
environment variable ``NOWCAST_CRASH_AT`` names that step (``name`` or ``name#n`` for its n-th
occurrence in the process); then it SIGKILLs the process. The crash-point tests
(``tests/test_crash_points.py``) kill real processes at every step listed in
:data:`CRASH_POINTS` and check that a restart repairs or redoes what was interrupted.

:class:`Lease` is the one lock with expiry: the ingest writer lease
(:class:`ingest.lease.WriterLock`) and the registry locks
(:class:`nowcast.model_registry.RegistryLock`) are thin adapters over it (their file names,
messages and exception types). A lease is one small JSON document (:class:`LeaseInfo`) created
exclusively, stale once expired (or, on a local file system, once its process is gone on this
host), broken only under a ``<lease>.break`` mutex and only while it still carries the stale
token, renewed by :meth:`Lease.refresh` and removed by :meth:`Lease.release` only while ours.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol

log = logging.getLogger(__name__)

#: marks the temporary files of :func:`write_atomic` (removed by :func:`remove_temp_files`)
TMP_INFIX = ".nowcast-tmp-"
#: environment variable naming the crash point at which to SIGKILL this process (tests)
CRASH_ENV = "NOWCAST_CRASH_AT"

#: every crash point, in the order a fresh ingest + forecast reaches them
CRASH_POINTS: tuple[str, ...] = (
    "store.create.begun",  # root document written with the "creating" flag, no coordinates yet
    "store.create.coords",  # coordinates written, the store not yet committed
    "store.day.begun",  # a day group document written, its arrays not yet created
    "store.day.arrays",  # the day's arrays created, the group not yet marked ready
    "store.append.data",  # a frame's chunk written, its slot not yet marked complete
    "store.append.marked",  # the slot marked complete, the root last_complete not yet moved
    "ingest.frame.stored",  # the frame stored, the source state not yet saved
    "ingest.state.saved",  # the source state saved, the status document not yet flushed
    "store.lightning.data",  # a lightning slot's chunk written, the slot not yet marked complete
    "ingest.lightning.stored",  # a lightning slot stored, the source state not yet saved
    "forecast.create.begun",  # forecasts store folders made, its root document not yet written
    "forecast.write.data",  # a run's data written, its "complete" marker not yet published
)

_hits: Counter[str] = Counter()
_hits_lock = threading.Lock()


def crash_point(name: str) -> None:
    """SIGKILL this process when ``NOWCAST_CRASH_AT`` is ``name`` (or ``name#n`` and this is the
    n-th time ``name`` is reached); otherwise do nothing (one environment lookup)."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    want, _, nth = spec.partition("#")
    if want != name:
        return
    with _hits_lock:
        _hits[name] += 1
        count = _hits[name]
    if count >= int(nth or 1):
        log.warning("crash point %s reached (%d): killing pid %d", name, count, os.getpid())
        for h in logging.getLogger().handlers:
            h.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(path: Path) -> None:
    """fsync a folder (its entries: a rename or a new file in it) where the platform allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse directory fsync
        pass
    finally:
        os.close(fd)


def is_remote(url: str | Path) -> bool:
    """True for object-storage / remote URLs (a scheme other than ``file://``); False for paths."""
    url = str(url)
    return "://" in url and url.split("://", 1)[0].lower() != "file"


def _temp_beside(target: Path) -> Path:
    return target.with_name(f"{target.name}{TMP_INFIX}{uuid.uuid4().hex}")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A local temporary path beside ``path``; on a clean exit of the block it is fsynced and
    renamed over ``path`` (atomic), on an exception removed and ``path`` left untouched.

    For writers that need a file name (``torch.save``, ``Dataset.to_netcdf``, copies); bytes
    go through :func:`write_atomic`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(target)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def _publish_local(target: Path, data: bytes, publish: Any) -> None:
    """Write ``data`` to a fsynced temporary beside ``target``, then ``publish(tmp, target)``
    (``os.replace``: overwrite; ``os.link``: create only) and fsync the folder; the temporary
    never outlives the call."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(target)
    try:
        _write_synced(tmp, data)
        publish(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)  # gone already after a replace
    fsync_dir(target.parent)


def write_atomic(path: str | Path, data: bytes, fs: Any | None = None) -> None:
    """Replace the file ``path`` with ``data`` atomically (see the module docstring).

    ``fs``: an fsspec file system for object storage (``path`` is then its path); None for
    the local file system.
    """
    if fs is not None and not _is_local_fs(fs):
        fs.pipe_file(str(path), data)  # one PUT: the object is replaced whole
        return
    _publish_local(Path(path), data, os.replace)


def write_exclusive(path: str | Path, data: bytes, fs: Any | None = None) -> None:
    """Create the file ``path`` with ``data``; :class:`FileExistsError` when it already exists.

    Locally a fsynced temporary is hard-linked to ``path`` (``link`` fails when the target
    exists), so a reader sees the complete content or no file. On object storage a conditional
    PUT (``If-None-Match: *``, fsspec mode ``"xb"``); file systems without conditional writes
    fall back to check-then-put, which is best effort (two writers can race).
    """
    if fs is not None and not _is_local_fs(fs):
        try:
            with fs.open(str(path), "xb") as fh:
                fh.write(data)
        except (NotImplementedError, ValueError, TypeError):
            fs.invalidate_cache(str(path))
            if fs.exists(str(path)):
                raise FileExistsError(str(path)) from None
            fs.pipe_file(str(path), data)
        return
    _publish_local(Path(path), data, os.link)  # link is atomic; EEXIST when the target exists


def _is_local_fs(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def remove_temp_files(root: str | Path) -> int:
    """Delete the temporary files a killed :func:`write_atomic` left under ``root``; returns how many."""
    n = 0
    for p in Path(root).rglob(f"*{TMP_INFIX}*"):
        try:
            p.unlink()
            n += 1
            log.info("removed leftover temporary file %s", p)
        except OSError:  # pragma: no cover - raced with another cleanup
            pass
    return n


# ================================================================================== leases
class LeaseHeld(RuntimeError):
    """A lease held by another live holder, or lost (taken over after it expired)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


_EPOCH = datetime.fromtimestamp(0, UTC)
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def _parse_time(value: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; naive means UTC); ValueError when unparseable."""
    t = datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", str(value)))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


@dataclass
class LeaseInfo:
    """The lease document: holder (owner, pid, host), ISO times, the holder's token.

    ``heartbeat`` is the Unix time of the holder's last write (acquire or refresh); it is also
    what ingest leases written before leases carried ``expires`` hold, so either reader
    understands the other's document.
    """

    owner: str
    pid: int
    host: str
    acquired: str
    expires: str
    token: str
    heartbeat: float = 0.0

    def expires_at(self) -> datetime:
        """The expiry as a UTC datetime (the epoch when unparseable: expired)."""
        try:
            return _parse_time(self.expires)
        except ValueError:
            return _EPOCH

    def expired(self, at: datetime | None = None) -> bool:
        """True once the expiry has passed (``at``: now by default; a pandas Timestamp works)."""
        return self.expires_at() <= (at or _utc_now())

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes, legacy_ttl: float | None = None) -> LeaseInfo:
        """Parse a lease document; ValueError, KeyError or TypeError when it is not one.

        ``legacy_ttl``: seconds added to the ``heartbeat`` of a document without ``expires``
        (ingest leases before this module held them). A breaker mutex of the same era
        (``{"created"}``) counts as a 60 s lease.
        """
        d = json.loads(data)
        if not isinstance(d, dict):
            raise TypeError("a lease document is a JSON object")
        if "expires" not in d and "created" in d:
            start = _parse_time(d["created"])
            d = {"owner": "?", "pid": 0, "host": "", "token": "", "acquired": d["created"], "expires": _iso(start + timedelta(seconds=60))}
        elif "expires" not in d and legacy_ttl is not None and "heartbeat" in d:
            beat = datetime.fromtimestamp(float(d["heartbeat"]), UTC)
            d = {"owner": "?", "acquired": _iso(beat), "expires": _iso(beat + timedelta(seconds=legacy_ttl)), **d}
        info = cls(str(d["owner"]), int(d["pid"]), str(d["host"]), str(d["acquired"]), str(d["expires"]), str(d["token"]), float(d.get("heartbeat") or 0.0))
        _parse_time(info.expires)  # an unparseable expiry is a corrupt document
        return info

    @classmethod
    def unreadable(cls) -> LeaseInfo:
        """What a corrupt lease file reads as: expired, no token, no holder."""
        return cls("unknown (unreadable lock)", 0, "", "", _iso(_EPOCH), "")


class LeaseStorage(Protocol):
    """Where a lease lives: names are keys (paths) the storage resolves."""

    #: object storage: no pid check, and creations are verified by a re-read (best effort)
    remote: bool

    def read_bytes(self, name: str) -> bytes: ...  # FileNotFoundError when absent

    def write_exclusive(self, name: str, data: bytes) -> None: ...  # FileExistsError when present

    def write_atomic(self, name: str, data: bytes) -> None: ...

    def remove(self, name: str) -> None: ...  # absent is fine

    def describe(self, name: str) -> str: ...


class FsLeaseStorage:
    """:class:`LeaseStorage` on a file system: names are paths of ``fs`` (an fsspec file
    system; None or a local one: the local file system through :func:`write_exclusive` /
    :func:`write_atomic`)."""

    def __init__(self, fs: Any | None = None) -> None:
        self.remote = fs is not None and not _is_local_fs(fs)
        self.fs = fs if self.remote else None

    def read_bytes(self, name: str) -> bytes:
        if self.fs is not None:
            self.fs.invalidate_cache(name)
            return bytes(self.fs.cat_file(name))
        with open(name, "rb") as fh:
            return fh.read()

    def write_exclusive(self, name: str, data: bytes) -> None:
        write_exclusive(name, data, self.fs)

    def write_atomic(self, name: str, data: bytes) -> None:
        write_atomic(name, data, self.fs)

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.fs is not None:
                self.fs.rm_file(name)
            else:
                os.unlink(name)

    def describe(self, name: str) -> str:
        return name


def _pid_gone(pid: int) -> bool:
    """True only when no process ``pid`` exists here (0 and negatives name groups: never gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # PermissionError: it exists, someone else's
        return False
    return False


def _default_owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "?"
    return f"{user}@{socket.gethostname()}"


class Lease:
    """A lock with expiry: the file ``name`` in ``storage`` holding a :class:`LeaseInfo`.

    :meth:`acquire` creates it exclusively (:func:`write_exclusive`); when it exists and is
    live it raises :attr:`error` naming the holder. A lease is stale once its expiry has passed
    or, with ``pid_check`` on a local file system, when its host is this one and its pid is
    gone; a stale lease is removed under the breaker mutex ``<name>.break`` (itself a 60 s
    lease, exclusive create) only if it still carries the stale token, then re-taken by
    exclusive creation, so of many contenders exactly one wins. :meth:`refresh` (renew the
    expiry) and :meth:`release` (remove, only while ours) check the token under the same
    mutex, so neither overwrites nor removes a lease someone else took meanwhile. On object
    storage, where creation may be check-then-put, each creation is verified by a re-read after
    :attr:`settle_s` (best effort: two writers in the same instant can still race).
    Subclasses set :attr:`error` and the message methods.
    """

    error: ClassVar[type[LeaseHeld]] = LeaseHeld
    #: tries of create / break before giving up as contended
    attempts: ClassVar[int] = 50
    #: seconds between writing a lease on object storage and the re-read that checks who won
    settle_s: ClassVar[float] = 0.05
    #: lifetime of the breaker mutex (one left by a crashed breaker is ignored afterwards)
    break_ttl_s: ClassVar[float] = 60.0
    #: how long refresh / release wait for the breaker mutex before going ahead without it
    mutex_wait_s: ClassVar[float] = 2.0

    def __init__(
        self,
        storage: LeaseStorage,
        name: str,
        ttl: float,
        owner: str | None = None,
        *,
        pid_check: bool = True,
        legacy_ttl: float | None = None,
    ) -> None:
        self.storage = storage
        self.name = name
        self.ttl_s = float(ttl)
        self.owner = owner or _default_owner()
        self.pid_check = pid_check
        self.legacy_ttl = legacy_ttl
        self.token = uuid.uuid4().hex
        self.info: LeaseInfo | None = None

    @property
    def held(self) -> bool:
        """Whether this object believes it holds the lease (refresh checks it really does)."""
        return self.info is not None

    # -- messages (subclasses word them for their users)
    def held_message(self, holder: LeaseInfo) -> str:
        return f"{self.storage.describe(self.name)} is held by {holder.owner} (pid {holder.pid} on {holder.host or '?'}) until {holder.expires}"

    def lost_message(self, current: LeaseInfo | None) -> str:
        who = f"{current.owner} (pid {current.pid} on {current.host or '?'})" if current else "nobody (removed)"
        return f"{self.storage.describe(self.name)}: lost the lease (taken over by {who})"

    def contended_message(self) -> str:
        return f"{self.storage.describe(self.name)}: could not acquire (contended)"

    def break_message(self, holder: LeaseInfo) -> str:
        return f"breaking stale lease {self.storage.describe(self.name)} of {holder.owner} (pid {holder.pid} on {holder.host or '?'}, expires {holder.expires})"

    # -- reading
    def _read_info(self, name: str) -> LeaseInfo | None:
        try:
            data = self.storage.read_bytes(name)
        except FileNotFoundError:
            return None
        try:
            return LeaseInfo.from_bytes(data, self.legacy_ttl)
        except (ValueError, KeyError, TypeError):
            return LeaseInfo.unreadable()

    def read(self) -> LeaseInfo | None:
        """The current holder, or None when free (an unreadable lease reads as expired)."""
        return self._read_info(self.name)

    def is_stale(self, info: LeaseInfo) -> bool:
        """Expired, or (``pid_check``, local storage) held by a process gone from this host."""
        if info.expired():
            return True
        return self.pid_check and not self.storage.remote and info.host == socket.gethostname() and _pid_gone(info.pid)

    def _new_info(self, ttl: float, token: str) -> LeaseInfo:
        t = _utc_now()
        return LeaseInfo(self.owner, os.getpid(), socket.gethostname(), _iso(t), _iso(t + timedelta(seconds=ttl)), token, time.time())

    def _won(self, name: str, token: str) -> bool:
        """Object storage: after a short wait, does ``name`` still carry ``token``?"""
        if not self.storage.remote:
            return True
        time.sleep(self.settle_s)  # let a concurrent writer's PUT land, then check who won
        current = self._read_info(name)
        return current is not None and current.token == token

    # -- the breaker mutex
    @contextmanager
    def _mutex(self, wait: float) -> Iterator[bool]:
        """Hold ``<name>.break`` for the block; yields False when not taken within ``wait`` s.

        A breaker left by a crashed holder is stale like any lease (expired after
        :attr:`break_ttl_s`, or its process gone) and is removed.
        """
        breaker = f"{self.name}.break"
        deadline = time.monotonic() + wait
        mine = self._new_info(self.break_ttl_s, uuid.uuid4().hex)
        got, removed = False, 0
        while True:
            try:
                self.storage.write_exclusive(breaker, mine.to_json())
            except FileExistsError:
                other = self._read_info(breaker)
                if other is not None and removed < 3 and self.is_stale(other):
                    log.warning("removing the stale breaker %s of pid %s on %s", self.storage.describe(breaker), other.pid, other.host or "?")
                    self.storage.remove(breaker)
                    removed += 1
                    continue
                if other is not None and time.monotonic() >= deadline:
                    break
                if other is not None:
                    time.sleep(0.01)
                continue
            got = self._won(breaker, mine.token)
            break
        try:
            yield got
        finally:
            if got:
                self.storage.remove(breaker)

    def _break(self, holder: LeaseInfo) -> None:
        """Remove the stale lease ``holder`` if we get the breaker mutex and it is unchanged."""
        with self._mutex(0.0) as got:
            if not got:
                time.sleep(0.01)  # another contender is breaking it: look again shortly
                return
            current = self.read()
            if current is not None and current.token == holder.token and self.is_stale(current):
                log.warning("%s", self.break_message(current))
                self.storage.remove(self.name)

    # -- the lease
    def acquire(self) -> LeaseInfo:
        """Take the lease or raise :attr:`error` naming the holder; renews one we hold."""
        if self.info is not None:
            return self.refresh()
        for _ in range(self.attempts):
            info = self._new_info(self.ttl_s, self.token)
            try:
                self.storage.write_exclusive(self.name, info.to_json())
            except FileExistsError:
                holder = self.read()
                if holder is None:
                    continue  # released meanwhile
                if holder.token == self.token:  # ours (this object lost track of it)
                    self.info = holder
                    return self.refresh()
                if not self.is_stale(holder):
                    raise self.error(self.held_message(holder)) from None
                self._break(holder)
                continue
            if not self._won(self.name, info.token):
                current = self.read()
                raise self.error(self.held_message(current) if current else self.contended_message())
            self.info = info
            log.info("acquired %s (expires %s)", self.storage.describe(self.name), info.expires)
            return info
        raise self.error(self.contended_message())

    def refresh(self) -> LeaseInfo:
        """Renew the expiry (``ttl`` from now); raises :attr:`error` when the lease was taken over."""
        with self._mutex(self.mutex_wait_s) as got:
            if not got:
                log.warning("renewing %s without the breaker mutex (held elsewhere)", self.storage.describe(self.name))
            current = self.read()
            if self.info is None or current is None or current.token != self.token:
                self.info = None
                raise self.error(self.lost_message(current))
            t = _utc_now()
            info = replace(self.info, expires=_iso(t + timedelta(seconds=self.ttl_s)), heartbeat=time.time())
            self.storage.write_atomic(self.name, info.to_json())
            self.info = info
            return info

    def release(self) -> None:
        """Remove the lease if it is still ours (never someone else's); no-op when not held."""
        if self.info is None:
            return
        try:
            with self._mutex(self.mutex_wait_s) as got:
                if not got:
                    log.warning("releasing %s without the breaker mutex (held elsewhere)", self.storage.describe(self.name))
                current = self.read()
                if current is not None and current.token == self.token:
                    self.storage.remove(self.name)
                elif current is not None:
                    log.warning("%s was taken over by %s (pid %s on %s); not removing it", self.storage.describe(self.name), current.owner, current.pid, current.host or "?")
        finally:
            self.info = None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = [
    "CRASH_ENV",
    "CRASH_POINTS",
    "TMP_INFIX",
    "FsLeaseStorage",
    "Lease",
    "LeaseHeld",
    "LeaseInfo",
    "LeaseStorage",
    "atomic_path",
    "crash_point",
    "is_remote",
    "remove_temp_files",
    "write_atomic",
    "write_exclusive",
]
