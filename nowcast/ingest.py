"""The per-frame ingest pipeline: poll -> fetch -> validate -> decode -> regrid -> append.

One :class:`SourceRunner` drives one source against the observation store. A run
(:meth:`SourceRunner.run_once`) polls the source for the items of the backfill window,
skips what the store already holds, fetches and decodes the rest (newest first, so the live
frame is never stuck behind a backfill; the next file is decoded in a worker thread while
the previous frame is written) and appends each frame. Everything a restart needs
lives in the store's per-source state (``store.get_state(name)``):

- ``done``: items processed (key -> signature, slot time), so nothing is fetched twice;
- ``bad``: items quarantined (key -> signature/SHA-1 and reason), retried only when they change;
- ``missing``: items the provider did not offer yet (404), retried with a back-off until
  they leave the backfill window (a provider that skips a slot costs a few cheap requests);
- whatever the source keeps (ETags, drop-folder sizes, replay file times).

Failures: a transient fetch failure (timeout, reset, 5xx, truncated transfer) is logged and
retried at the next poll; a file that fetches but fails validation or decoding is
*quarantined* (moved/copied to ``quarantine_dir/<source>/`` with a ``.reason.txt``); a failing
source never stops the others (each runner catches everything and reports it in the status).

Ordering and atomicity: the store writes a frame before its completeness flag, and the
runner records an item as done only after the append; a crash in between re-fetches the
item and the idempotent append turns it into a no-op. Lightning files (kind "lightning")
are gridded per cadence slot and a slot is written once it is closed (its end plus
``lightning_settle`` has passed on the source clock), recomputed from all of its files when a
late file arrives, so counts are exact and idempotent.

Status: :class:`IngestStatus` keeps counters (frames ingested / failed / backfilled /
duplicate / quarantined), the ingest lag and the last error per source, written to the store
state ``ingest_status``; :func:`read_ingest_status` reads it (API /v1/status, /metrics).
``frames_ingested`` never falls below the store's own per-source count (written with each
frame's completeness marker), so it survives a SIGKILL exactly as the frames do.

HTTP validators (ETag, Last-Modified) are remembered only for content that decoded (stored
or skipped as off-cadence), never for quarantined content: a truncated transfer that carried
the full file's ETag must not turn every later request into a 304.
The single-writer rule is enforced by :class:`WriterLock`, a lease file in the store folder.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims, durability
from nowcast.grid import Grid
from nowcast.sources.base import (
    LIGHTNING,
    Fetched,
    Item,
    NotAvailable,
    NotModified,
    Source,
    SourceError,
    TransientError,
)

if TYPE_CHECKING:
    from nowcast.store import ObservationStore

log = logging.getLogger(__name__)

#: store-state key of the ingest status document
STATUS_KEY = "ingest_status"
#: bounds of the per-source state
MAX_DONE = 5_000
MAX_VALIDATORS = 512
MAX_LIGHTNING_SLOTS = 2_000


class BadFile(ValueError):
    """Fetched content that fails validation or decoding (it is quarantined)."""


class OffCadence(ValueError):
    """A frame whose time is not on the store cadence (e.g. 2-min MRMS into a 5-min store): skipped."""


# ============================================================================ settings
@dataclass
class IngestSettings:
    """Runtime options of the pipeline (per source).

    backfill: how far back (source clock) items are looked for.
    quarantine_dir: where bad files go (``<dir>/<source>/``).
    regrid_method: ``"nearest"`` or ``"area_mean"`` (:func:`nowcast.regrid.regrid`).
    max_items_per_run: at most this many fetches per run (the rest waits for the next run).
    missing_retry: back-off for items the provider does not offer (doubles up to 8x);
        items younger than ``fresh_window`` are retried at every run.
    backfilled_after: a frame older than this when ingested counts as backfilled.
    max_bytes: files larger than this are refused (bad).
    lightning_settle: how long after its end a lightning slot is written.
    reader_options: keyword options for ``nowcast.io.read_radar``.
    clock_offset: added to the wall clock to get the source's "now" (negative: consume a
        provider's archive as if it were live; testing).
    notify_url: POSTed a small JSON after each new complete frame (errors only logged).
    on_frame: called with (time, source name) after each new complete frame.
    """

    backfill: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("3h"))
    quarantine_dir: Path = Path("var/quarantine")
    regrid_method: str = "nearest"
    max_items_per_run: int = 500
    missing_retry: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("5min"))
    fresh_window: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("15min"))
    backfilled_after: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("15min"))
    max_bytes: int = 2 * 1024**3
    lightning_settle: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("1min"))
    reader_options: dict[str, Any] = field(default_factory=dict)
    clock_offset: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(0))
    notify_url: str | None = None
    notify_timeout: float = 2.0
    on_frame: Callable[[pd.Timestamp, str], None] | None = None


@dataclass
class RunReport:
    """What one run of a source did."""

    source: str
    polled: int = 0
    ingested: int = 0
    backfilled: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failed: int = 0
    missing: int = 0
    skipped: int = 0
    lightning_slots: int = 0
    errors: list[str] = field(default_factory=list)
    newest: pd.Timestamp | None = None
    seconds: float = 0.0


# ============================================================================ status
class IngestStatus:
    """Thread-safe ingest counters per source, persisted as the store state ``ingest_status``.

    Counters continue from the stored document, so they survive restarts.
    """

    def __init__(self, store: ObservationStore, write_lock: threading.Lock | None = None) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._write_lock = write_lock or threading.Lock()
        prev = read_ingest_status(store)
        self._doc: dict[str, Any] = {
            "sources": dict(prev.get("sources", {})),
            "started": pd.Timestamp.now(tz="UTC").isoformat(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        with self._lock:
            self._reconcile(None)

    def _stored_counts(self) -> dict[str, int]:
        try:
            return dict(self.store.frames_by_source())
        except Exception as exc:  # a store without per-source counts (or a test double)
            log.debug("no per-source frame counts: %s", exc)
            return {}

    def _reconcile(self, name: str | None) -> None:
        """Raise ``frames_ingested`` to the store's count (frames written by a process killed
        before it flushed its status); caller holds ``self._lock``."""
        counts = self._stored_counts()
        for source, entry in self._doc["sources"].items():
            if name is not None and source != name:
                continue
            stored = counts.get(source, 0)
            if int(entry.get("frames_ingested", 0)) < stored:
                entry["frames_ingested"] = stored

    def _entry(self, name: str) -> dict[str, Any]:
        e = self._doc["sources"].setdefault(name, {})
        for k in ("frames_ingested", "frames_failed", "frames_backfilled", "frames_duplicate", "frames_quarantined", "frames_missing", "lightning_slots", "polls", "consecutive_failures"):
            e.setdefault(k, 0)
        for k in ("last_poll", "last_success", "last_frame", "last_error", "last_error_time", "lag_seconds", "kind"):
            e.setdefault(k, None)
        return e

    def register(self, name: str, kind: str) -> None:
        with self._lock:
            self._entry(name)["kind"] = kind
            self._reconcile(name)

    def record(self, report: RunReport, source_now: pd.Timestamp) -> None:
        with self._lock:
            e = self._entry(report.source)
            e["polls"] += 1
            e["frames_ingested"] += report.ingested
            self._reconcile(report.source)
            e["frames_backfilled"] += report.backfilled
            e["frames_duplicate"] += report.duplicates
            e["frames_quarantined"] += report.quarantined
            e["frames_failed"] += report.failed + report.quarantined
            e["frames_missing"] += report.missing
            e["lightning_slots"] += report.lightning_slots
            now = pd.Timestamp.now(tz="UTC").isoformat()
            e["last_poll"] = now
            if report.newest is not None and (e["last_frame"] is None or pd.Timestamp(e["last_frame"]) < report.newest):
                e["last_frame"] = report.newest.isoformat()
            if e["last_frame"] is not None:
                e["lag_seconds"] = max(0.0, (source_now - pd.Timestamp(e["last_frame"])).total_seconds())
            if report.errors:
                e["last_error"] = report.errors[-1]
                e["last_error_time"] = now
                e["consecutive_failures"] += 1
            else:
                e["consecutive_failures"] = 0
                e["last_success"] = now

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            doc = copy.deepcopy(self._doc)
        doc["updated"] = pd.Timestamp.now(tz="UTC").isoformat()
        return doc

    def flush(self) -> None:
        """Write the status document into the store state (errors logged, never raised)."""
        doc = self.snapshot()
        try:
            with self._write_lock:
                self.store.set_state(STATUS_KEY, doc)
        except Exception as exc:  # status must never break ingest
            log.warning("could not write ingest status: %s", exc)


def read_ingest_status(store: ObservationStore) -> dict[str, Any]:
    """The ingest status document of ``store`` ({} before the first ingest).

    ``{"updated", "started", "pid", "host", "sources": {name: {"kind", "frames_ingested",
    "frames_failed", "frames_backfilled", "frames_duplicate", "frames_quarantined",
    "frames_missing", "lightning_slots", "polls", "consecutive_failures", "last_poll",
    "last_success", "last_frame", "lag_seconds", "last_error", "last_error_time"}}}``;
    times are ISO 8601 UTC, ``lag_seconds`` is the source clock at the last poll minus the
    newest frame ingested. ``frames_ingested`` is at least the store's own count of the
    source's frames (exact after a SIGKILL that came before the status was flushed).
    """
    try:
        doc = dict(store.get_state(STATUS_KEY))
    except Exception as exc:
        log.debug("no ingest status: %s", exc)
        return {}
    try:  # frames stored by a process killed before it flushed its status still count
        counts = store.frames_by_source()
    except Exception as exc:
        log.debug("no per-source frame counts: %s", exc)
        counts = {}
    for name, entry in doc.get("sources", {}).items():
        if isinstance(entry, dict) and int(entry.get("frames_ingested") or 0) < counts.get(name, 0):
            entry["frames_ingested"] = counts[name]
    return doc


# ============================================================================ single writer
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
        if not self._local:  # one PUT: an object is replaced whole
            self._fs.pipe_file(self._path, self._doc())
            return
        tmp = f"{self._path}.{self.token}.tmp"
        with self._fs.open(tmp, "wb") as fh:
            fh.write(self._doc())
        os.replace(tmp, self._path)

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockHeld` naming the holder."""
        if self._local:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(self._doc())
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


# ============================================================================ decoding
def decode_radar(fetched: Fetched, grid: Grid, cadence: pd.Timedelta, settings: IngestSettings, wall: pd.Timestamp) -> tuple[xr.DataArray, xr.DataArray | None]:
    """Validate and decode fetched content into a rain frame ``(y, x)`` float32 mm/h on ``grid``
    (with scalar ``time``) and optional lightning counts; raises BadFile or OffCadence."""
    lightning = None
    if fetched.dataset is not None:
        ds = fetched.dataset
        if dims.RAIN_RATE not in ds:
            raise BadFile(f"dataset has no {dims.RAIN_RATE!r} variable")
        frame = ds[dims.RAIN_RATE]
        if dims.LIGHTNING in ds:
            lightning = ds[dims.LIGHTNING]
    else:
        from nowcast.io import ReaderError, read_radar

        path = fetched.path
        if path is None or not path.is_file():
            raise BadFile("no content")
        size = path.stat().st_size
        if size == 0:
            raise BadFile("empty file")
        if size > settings.max_bytes:
            raise BadFile(f"file of {size} bytes exceeds max_bytes={settings.max_bytes}")
        try:
            frame = read_radar(path, **settings.reader_options)
        except ReaderError as exc:
            raise BadFile(exc.reason) from exc
        except MemoryError as exc:
            raise BadFile("out of memory while decoding") from exc
    if dims.TIME in frame.dims:
        if frame.sizes[dims.TIME] != 1:
            raise BadFile(f"expected one frame, got {frame.sizes[dims.TIME]} times")
        frame = frame.isel({dims.TIME: 0})
    if fetched.time is not None:
        frame = frame.assign_coords({dims.TIME: np.datetime64(fetched.time.as_unit("ns").to_datetime64())})
        if lightning is not None:
            lightning = lightning.assign_coords({dims.TIME: frame[dims.TIME]})
    if dims.TIME not in frame.coords:
        raise BadFile("frame has no valid time")
    t = dims.to_utc_timestamp(frame[dims.TIME].values)
    if t > wall + pd.Timedelta("1h"):
        raise BadFile(f"valid time {t} is in the future")
    if t.floor(cadence) != t:
        raise OffCadence(f"valid time {t} is not on the store cadence {cadence}")
    try:
        dims.validate_frames(frame)
    except dims.DataModelError as exc:
        raise BadFile(f"not a valid frame: {exc}") from exc
    values = np.asarray(frame.values)
    if not np.isfinite(values).any():
        raise BadFile("frame holds no valid data (all NaN)")
    if not Grid.of(frame).same_as(grid):
        from nowcast.regrid import regrid

        try:
            frame = regrid(frame, grid, method=settings.regrid_method)  # type: ignore[arg-type]
        except Exception as exc:
            raise BadFile(f"cannot regrid onto the store grid: {type(exc).__name__}: {exc}") from exc
        if lightning is not None:
            lightning = regrid(lightning, grid, method="nearest")
        if not np.isfinite(np.asarray(frame.values)).any():
            raise BadFile("frame does not overlap the store grid")
    return frame, lightning


# ============================================================================ the runner
def _safe_name(key: str) -> str:
    base = key.rstrip("/").rsplit("/", 1)[-1] or "item"
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", base)[-120:]


class SourceRunner:
    """Runs one source against the store; see the module docstring.

    ``write_lock`` serialises writes of runners sharing one store object (one process).
    """

    def __init__(self, source: Source, store: ObservationStore, settings: IngestSettings | None = None, status: IngestStatus | None = None, write_lock: threading.Lock | None = None) -> None:
        self.source = source
        self.store = store
        self.settings = settings or IngestSettings()
        self.write_lock = write_lock or threading.Lock()
        self.status = status
        self.name = source.name
        if status is not None:
            status.register(self.name, source.kind)
        self._flash_cache: OrderedDict[str, Any] = OrderedDict()
        self._run_lock = threading.Lock()

    # -- state helpers -------------------------------------------------------------------
    def _save_state(self, state: dict[str, Any]) -> None:
        done = state.get("done", {})
        while len(done) > MAX_DONE:
            done.pop(next(iter(done)))
        with self.write_lock:
            self.store.set_state(self.name, state)

    def _wanted(self, item: Item, state: dict[str, Any], wall: pd.Timestamp) -> bool:
        done = state.get("done", {}).get(item.key)
        if done is not None and item.signature and done.get("sig") == item.signature:
            return False  # unchanged file; items without a signature (a "latest" alias) are
            # re-requested every run (conditionally) and items of a known slot skip via has()
        bad = state.get("bad", {}).get(item.key)
        if bad is not None and item.signature and bad.get("sig") == item.signature:
            return False
        miss = state.get("missing", {}).get(item.key)
        if miss is not None and pd.Timestamp(miss["next"]) > wall:
            return False
        if item.kind != LIGHTNING and item.time is not None:
            if item.time.floor(self.store.cadence) != item.time:
                return False  # provider slot not on the store cadence
            if self.store.has(item.time):
                return False
        return True

    # -- one run -------------------------------------------------------------------------
    def run_once(self, now: pd.Timestamp | None = None) -> RunReport:
        """Poll the source once and ingest what is new; never raises (errors are reported)."""
        if not self._run_lock.acquire(blocking=False):
            rep = RunReport(self.name)
            rep.errors.append("previous run still in progress")
            return rep
        try:
            return self._run(now)
        finally:
            self._run_lock.release()

    def _run(self, now: pd.Timestamp | None) -> RunReport:
        t_start = time.monotonic()
        wall = dims.to_utc_timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
        rep = RunReport(self.name)
        src_now = wall
        state: dict[str, Any] = {}
        try:
            state = copy.deepcopy(self.store.get_state(self.name))
            shifted = wall + self.settings.clock_offset
            now0 = self.source.clock(shifted)
            items = self.source.poll(now0, now0 - self.settings.backfill, state)
            src_now = self.source.clock(shifted)
            if src_now != now0:  # a simulated clock that got to know its archive in poll
                items = self.source.poll(src_now, src_now - self.settings.backfill, state)
            since = src_now - self.settings.backfill
            items = [i for i in items if i.time is None or i.time > since]
            rep.polled = len(items)
            todo = [i for i in items if self._wanted(i, state, wall)]
            rep.skipped = len(items) - len(todo)
            # newest first; unknown times (latest alias, drop-folder files) first of all
            todo.sort(key=lambda i: (i.time is not None, -(i.time.value if i.time is not None else 0)))
            self._process_all(todo[: self.settings.max_items_per_run], state, wall, src_now, rep)
            if self.source.kind == LIGHTNING:
                self._write_lightning_slots(state, src_now, rep)
            self._prune(state, since, wall)
            self._save_state(state)
        except SourceError as exc:
            rep.errors.append(str(exc))
            log.warning("source %s: %s", self.name, exc)
        except Exception as exc:  # a bad source never stops the others
            rep.errors.append(f"{type(exc).__name__}: {exc}")
            log.exception("source %s failed", self.name)
        rep.seconds = time.monotonic() - t_start
        if self.status is not None:
            self.status.record(rep, src_now)
            self.status.flush()
        if rep.ingested or rep.errors or rep.quarantined:
            log.info(
                "source %s: %d polled, %d ingested (%d backfilled), %d duplicate, %d quarantined, %d failed, %d missing in %.2f s",
                self.name, rep.polled, rep.ingested, rep.backfilled, rep.duplicates, rep.quarantined, rep.failed, rep.missing, rep.seconds,
            )
        return rep

    def _fetch(self, item: Item, state: dict[str, Any], wall: pd.Timestamp, src_now: pd.Timestamp, rep: RunReport) -> Fetched | None:
        """Fetch one item (in the runner thread: sources may update ``state``); None when there
        is nothing to decode."""
        try:
            fetched = self.source.fetch(item, state)
        except NotModified:
            state.setdefault("missing", {}).pop(item.key, None)
            return None
        except NotAvailable as exc:
            self._missing(item, state, wall, src_now, str(exc))
            rep.missing += 1
            return None
        except TransientError as exc:
            rep.failed += 1
            rep.errors.append(str(exc))
            log.warning("source %s: %s (will retry)", self.name, exc)
            return None
        except SourceError as exc:
            rep.failed += 1
            rep.errors.append(str(exc))
            log.warning("source %s: %s", self.name, exc)
            return None
        sha = fetched.validators.get("sha1", "")
        bad = state.get("bad", {}).get(item.key)
        if bad is not None and sha and bad.get("sha1") == sha:
            fetched.cleanup()
            return None  # same bad content as before
        return fetched

    def _decode(self, fetched: Fetched, wall: pd.Timestamp) -> tuple[str, Any]:
        """Decode off the runner thread: ("ok", (frame, lightning)), ("skip", reason) or ("bad", reason)."""
        try:
            return "ok", decode_radar(fetched, self.store.grid, self.store.cadence, self.settings, wall)
        except OffCadence as exc:
            return "skip", str(exc)
        except BadFile as exc:
            return "bad", str(exc)

    def _finish(self, item: Item, fetched: Fetched, decoded: tuple[str, Any], state: dict[str, Any], wall: pd.Timestamp, src_now: pd.Timestamp, rep: RunReport) -> None:
        """Append a decoded frame (or quarantine / skip it) and record the item."""
        try:
            outcome, value = decoded
            if outcome == "skip":
                log.debug("source %s: %s: %s", self.name, item.key, value)
                self._mark_done(item, state, None, wall, fetched)
                rep.skipped += 1
                return
            if outcome == "bad":
                self._quarantine(item, fetched, value, state, wall, rep)
                return
            frame, lightning = value
            t = dims.to_utc_timestamp(frame[dims.TIME].values)
            if item.time is not None and fetched.time is None and t != item.time:
                log.warning("source %s: %s holds the frame of %s, not of slot %s", self.name, item.key, t, item.time)
            try:
                with self.write_lock:
                    written = self.store.append(frame, lightning=lightning, source=self.name)
            except Exception as exc:  # e.g. storage full/unreachable: retried at the next run
                rep.failed += 1
                rep.errors.append(f"{item.key}: cannot store frame {t}: {type(exc).__name__}: {exc}")
                log.error("source %s: cannot store frame %s from %s: %s", self.name, t, item.key, exc)
                return
            durability.crash_point("ingest.frame.stored")
            self._mark_done(item, state, t, wall, fetched)
            self._save_state(state)
            durability.crash_point("ingest.state.saved")
            if written:
                rep.ingested += 1
                if src_now - t > self.settings.backfilled_after:
                    rep.backfilled += 1
                if rep.newest is None or t > rep.newest:
                    rep.newest = t
                self._notify(t)
            else:
                rep.duplicates += 1
        finally:
            fetched.cleanup()

    def _process_all(self, todo: list[Item], state: dict[str, Any], wall: pd.Timestamp, src_now: pd.Timestamp, rep: RunReport) -> None:
        """Fetch, decode and append ``todo`` in order; radar files are decoded one ahead in a
        worker thread while the previous frame is written (decode and write overlap)."""
        from concurrent.futures import Future, ThreadPoolExecutor

        pending: tuple[Item, Fetched, Future] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"decode-{self.name}") as pool:
            try:
                for item in todo:
                    fetched = self._fetch(item, state, wall, src_now, rep)
                    if fetched is None:
                        continue
                    if item.kind == LIGHTNING:
                        try:
                            self._ingest_lightning_file(item, fetched, state, wall, rep)
                        finally:
                            fetched.cleanup()
                        continue
                    future = pool.submit(self._decode, fetched, wall)
                    if pending is not None:
                        self._finish(pending[0], pending[1], pending[2].result(), state, wall, src_now, rep)
                    pending = (item, fetched, future)
                if pending is not None:
                    last, pending = pending, None
                    self._finish(last[0], last[1], last[2].result(), state, wall, src_now, rep)
            finally:
                if pending is not None:  # an error above: do not leak a temporary download
                    pending[2].cancel()
                    pending[1].cleanup()

    @staticmethod
    def _remember(state: dict[str, Any], key: str, fetched: Fetched | None) -> None:
        """Record the HTTP validators (ETag, Last-Modified) of a processed item."""
        if fetched is None:
            return
        got = {k: v for k, v in fetched.validators.items() if k in ("etag", "last_modified")}
        if not got:
            return
        table = state.setdefault("validators", {})
        table.pop(key, None)
        table[key] = got
        while len(table) > MAX_VALIDATORS:
            table.pop(next(iter(table)))

    def _mark_done(self, item: Item, state: dict[str, Any], t: pd.Timestamp | None, wall: pd.Timestamp, fetched: Fetched | None = None) -> None:
        self._remember(state, item.key, fetched)
        done = state.setdefault("done", {})
        done.pop(item.key, None)
        if item.kind == LIGHTNING or item.time is None or t is None or t != item.time:
            # items of a known slot are recognised by store.has(); remember only the others
            done[item.key] = {"sig": item.signature, "time": t.isoformat() if t is not None else None, "at": wall.isoformat()}
        state.setdefault("missing", {}).pop(item.key, None)
        state.setdefault("bad", {}).pop(item.key, None)
        if t is not None and (state.get("last_time") is None or pd.Timestamp(state["last_time"]) < t):
            state["last_time"] = t.isoformat()

    def _missing(self, item: Item, state: dict[str, Any], wall: pd.Timestamp, src_now: pd.Timestamp, reason: str) -> None:
        miss = state.setdefault("missing", {})
        n = int(miss.get(item.key, {}).get("n", 0)) + 1
        fresh = item.time is not None and src_now - item.time < self.settings.fresh_window
        delay = pd.Timedelta(0) if fresh else self.settings.missing_retry * min(2 ** (n - 1), 8)
        miss[item.key] = {"n": n, "next": (wall + delay).isoformat(), "reason": reason}
        log.debug("source %s: %s not available (%d): %s", self.name, item.key, n, reason)

    def _quarantine(self, item: Item, fetched: Fetched, reason: str, state: dict[str, Any], wall: pd.Timestamp, rep: RunReport) -> None:
        qdir = Path(self.settings.quarantine_dir) / _safe_name(self.name)
        qdir.mkdir(parents=True, exist_ok=True)
        stamp = wall.strftime("%Y%m%dT%H%M%S")
        dest = qdir / f"{stamp}-{_safe_name(item.key)}"
        i = 1
        while dest.exists() or dest.with_name(dest.name + ".reason.txt").exists():
            dest = qdir / f"{stamp}-{i}-{_safe_name(item.key)}"
            i += 1
        if fetched.path is not None and fetched.path.exists():
            if fetched.temporary:
                shutil.move(str(fetched.path), dest)
                fetched.path = None
            else:
                shutil.copy2(fetched.path, dest)
        text = (
            f"source: {self.name}\nkey: {item.key}\nslot: {item.time}\nwhen: {wall.isoformat()}Z\n"
            f"sha1: {fetched.validators.get('sha1', '')}\nreason: {reason}\n"
        )
        dest.with_name(dest.name + ".reason.txt").write_text(text)
        # no validators: content that did not decode may be a truncated transfer of a good file
        # (same ETag); the SHA-1 in "bad" keeps the same bad content from being processed twice
        state.setdefault("validators", {}).pop(item.key, None)
        state.setdefault("bad", {})[item.key] = {"sig": item.signature, "sha1": fetched.validators.get("sha1", ""), "reason": reason, "at": wall.isoformat(), "file": str(dest)}
        state.setdefault("missing", {}).pop(item.key, None)
        self._save_state(state)
        rep.quarantined += 1
        rep.errors.append(f"{item.key}: {reason}")
        log.warning("source %s: quarantined %s -> %s: %s", self.name, item.key, dest, reason)

    def _notify(self, t: pd.Timestamp) -> None:
        if self.settings.on_frame is not None:
            try:
                self.settings.on_frame(t, self.name)
            except Exception as exc:
                log.warning("on_frame hook failed: %s", exc)
        if self.settings.notify_url:
            import httpx

            try:
                httpx.post(
                    self.settings.notify_url,
                    json={"time": t.isoformat(), "source": self.name, "store": str(self.store.url), "version": self.store.version},
                    timeout=self.settings.notify_timeout,
                )
            except Exception as exc:
                log.warning("new-frame callback %s failed: %s", self.settings.notify_url, exc)

    def _prune(self, state: dict[str, Any], since: pd.Timestamp, wall: pd.Timestamp) -> None:
        horizon = (wall - max(self.settings.backfill, pd.Timedelta("1D")) * 2).isoformat()
        for key in ("missing",):
            table = state.get(key, {})
            for k in [k for k, v in table.items() if v.get("next", "") < horizon]:
                del table[k]
        done = state.get("done", {})
        for k in [k for k, v in done.items() if v.get("at", "") < horizon]:
            del done[k]
        slots = state.get("lightning_slots", {})
        for k in sorted(slots)[:-MAX_LIGHTNING_SLOTS] if len(slots) > MAX_LIGHTNING_SLOTS else []:
            del slots[k]

    # -- lightning -----------------------------------------------------------------------
    def _flashes(self, key: str, fetched: Fetched | None, state: dict[str, Any]) -> Any:
        from nowcast.lightning import read_lightning

        hit = self._flash_cache.get(key)
        if hit is not None:
            self._flash_cache.move_to_end(key)
            return hit
        own = fetched is None
        if own:
            fetched = self.source.fetch(Item(key=key, kind=LIGHTNING), state)
        try:
            assert fetched is not None and fetched.path is not None
            fl = read_lightning(fetched.path)
        finally:
            if own and fetched is not None:
                fetched.cleanup()
        self._flash_cache[key] = fl
        while len(self._flash_cache) > 256:
            self._flash_cache.popitem(last=False)
        return fl

    def _ingest_lightning_file(self, item: Item, fetched: Fetched, state: dict[str, Any], wall: pd.Timestamp, rep: RunReport) -> None:
        from nowcast.lightning import LightningError, slot_of

        try:
            if fetched.path is None:
                raise LightningError(item.key, "no content")
            fl = self._flashes(item.key, fetched, state)
        except LightningError as exc:
            self._quarantine(item, fetched, exc.reason, state, wall, rep)
            return
        slots = state.setdefault("lightning_slots", {})
        labels = sorted(set(slot_of(fl.time, self.store.cadence))) if len(fl) else []
        for t in labels:
            entry = slots.setdefault(t.isoformat(), {"files": [], "written": []})
            if item.key not in entry["files"]:
                entry["files"].append(item.key)
        self._mark_done(item, state, None, wall, fetched)

    def _write_lightning_slots(self, state: dict[str, Any], src_now: pd.Timestamp, rep: RunReport) -> None:
        from nowcast.lightning import Flashes, grid_counts

        slots = state.get("lightning_slots", {})
        for iso in sorted(slots):
            entry = slots[iso]
            t = pd.Timestamp(iso)
            if t + self.settings.lightning_settle > src_now:
                continue  # interval still open
            if sorted(entry["files"]) == sorted(entry["written"]):
                continue
            parts = []
            for key in entry["files"]:
                try:
                    parts.append(self._flashes(key, None, state))
                except Exception as exc:
                    log.warning("source %s: lightning file %s unavailable for slot %s: %s", self.name, key, t, exc)
            counts = grid_counts(Flashes.concat(parts), self.store.grid, self.store.cadence, times=[t]).isel({dims.TIME: 0})
            with self.write_lock:
                self.store.append_lightning(t, counts.values, overwrite=bool(entry["written"]))
            durability.crash_point("ingest.lightning.stored")
            entry["written"] = sorted(entry["files"])
            rep.lightning_slots += 1
            self._save_state(state)
            self._notify(t)
