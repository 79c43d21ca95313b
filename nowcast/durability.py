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
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def _fsync_dir(path: Path) -> None:
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
    _fsync_dir(target.parent)


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
    _fsync_dir(target.parent)


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


__all__ = [
    "CRASH_ENV",
    "CRASH_POINTS",
    "TMP_INFIX",
    "atomic_path",
    "crash_point",
    "is_remote",
    "remove_temp_files",
    "write_atomic",
    "write_exclusive",
]
