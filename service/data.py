"""Read access of the API to the observation and forecast stores, with version-keyed caches.

Time keys name a frame in URLs:

- ``YYYYmmddTHHMM`` - an observed frame (immutable);
- ``YYYYmmddTHHMM+L`` - lead ``L`` minutes of the forecast run initialised at that time (immutable);
- ``latest`` / ``latest+L`` - the newest observed frame / lead L of the newest run (mutable).

Every request starts from a :class:`Snapshot` of both stores (versions, newest frame, newest
run). Reading the versions through the store API costs about a millisecond, so the snapshot is
reused while a cheap *change stamp* is unchanged: for local stores the bytes of the observation
store's root ``zarr.json`` (which holds the counters and the ``last_complete`` marker the
version is made of) and the listing plus ``stat`` of the forecast store's ``complete/``
markers; a change of either (or ``store_poll_s`` elapsed) re-reads the versions through the
store API. So a new frame or run is visible on the first request after it is published.
Object storage has no cheap stamp: there the versions are re-read at most every
``store_poll_s`` seconds. Fields, resolved keys and rendered responses are cached in bounded
LRUs under keys that include the versions.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from dataclasses import field as dc_field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from nowcast import dims, storage
from nowcast.forecast_store import (
    ForecastStore,
    ForecastStoreError,
    ForecastStoreLike,
    RunInfo,
    run_key,
)
from nowcast.grid import Grid
from service.cache import CachedBody, LRUCache
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

KEY_TIME_FORMAT = "%Y%m%dT%H%M"
#: a UTC date-time ``YYYYmmddTHHMM`` with plausible fields (years 1900-2199)
_STAMP = r"(?:19|20|21)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3])[0-5]\d"
#: OpenAPI pattern (and validation) of time keys in map and tile URLs
TIME_KEY_PATTERN = rf"^(?:latest|{_STAMP})(?:\+\d{{1,4}})?$"
TIME_KEY_HELP = (
    "YYYYmmddTHHMM (observed frame, UTC, e.g. 20250601T1200), YYYYmmddTHHMM+LEAD (forecast lead in minutes, "
    "e.g. 20250601T1200+15), 'latest' or 'latest+LEAD'"
)
_KEY_RE = re.compile(r"^(?P<base>latest|\d{8}T\d{4})(?:\+(?P<lead>\d{1,4}))?$")
_KEY_STRICT = re.compile(TIME_KEY_PATTERN)
LAYERS = ("rain", "lightning")


#: the longest sleep of background work between two steps (seconds), see :func:`yield_to_requests`
PREWARM_YIELD_MAX_S = 0.05


def yield_to_requests(step_s: float, share: float) -> None:
    """Sleep after a background step of ``step_s`` seconds so that the work takes at most ``share``
    of the wall time (at most :data:`PREWARM_YIELD_MAX_S`): the requests in flight, on the event
    loop, get the GIL for the rest."""
    if share < 1.0:
        time.sleep(min(PREWARM_YIELD_MAX_S, step_s * (1.0 - share) / share))


class NotFound(LookupError):
    """A frame, run, lead or location that does not exist (HTTP 404)."""


class BadRequest(ValueError):
    """A malformed parameter (HTTP 400)."""


class Unavailable(RuntimeError):
    """The stores are not ready yet (HTTP 503, e.g. right after start)."""


def time_key(t: pd.Timestamp, lead_minutes: int | None = None) -> str:
    """URL key of an observed frame, or of a forecast lead when ``lead_minutes`` is given."""
    base = pd.Timestamp(t).strftime(KEY_TIME_FORMAT)
    return base if lead_minutes is None else f"{base}+{int(lead_minutes)}"


def iso(t: pd.Timestamp | None) -> str | None:
    """UTC ISO 8601 with a Z suffix."""
    return None if t is None else pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class FrameRef:
    """A resolved frame: an observation (lead None) or a forecast lead."""

    time: pd.Timestamp  # observation time or forecast init time
    lead_minutes: int | None
    immutable: bool
    model: str = ""
    #: when the run of a forecast lead was written (its content version); None for observations
    written_at: pd.Timestamp | None = None

    @property
    def is_forecast(self) -> bool:
        return self.lead_minutes is not None

    @property
    def valid_time(self) -> pd.Timestamp:
        return self.time + pd.Timedelta(minutes=self.lead_minutes or 0)

    @cached_property
    def key(self) -> str:
        return time_key(self.time, self.lead_minutes)


@dataclass(frozen=True)
class Snapshot:
    """What both stores hold at one moment: the cache-key prefix of every response."""

    obs_version: str
    last_complete: pd.Timestamp | None
    #: POSIX seconds of the observation store's last change (Last-Modified of its responses)
    obs_modified: float
    fc_version: str
    latest_run: RunInfo | None
    obs_stamp: Any = dc_field(default=None, compare=False, repr=False)
    fc_stamp: Any = dc_field(default=None, compare=False, repr=False)
    checked_at: float = dc_field(default=0.0, compare=False, repr=False)
    #: frames replaced so far (``nowcast import --overwrite``): part of every observed frame's content version
    obs_replaced: int = 0
    #: times of the complete rain and lightning frames (sorted), read once per observation version
    obs_times: pd.DatetimeIndex = dc_field(default_factory=lambda: pd.DatetimeIndex([]), compare=False, repr=False)
    lightning_times: pd.DatetimeIndex = dc_field(default_factory=lambda: pd.DatetimeIndex([]), compare=False, repr=False)

    @property
    def versions(self) -> tuple[str, str]:
        return self.obs_version, self.fc_version

    @cached_property
    def modified(self) -> float:
        """Last change of either store (POSIX seconds): Last-Modified of documents built from both."""
        fc = posix_seconds(self.latest_run.written_at) if self.latest_run is not None else 0.0
        return max(self.obs_modified, fc)

    def content_version(self, ref: FrameRef, layer: str | None = None) -> str:
        """Cache key of what ``ref`` shows for ``layer`` (None: every layer, e.g. its netCDF file).

        A new frame or run changes the store versions, not what frames already complete show:
        an observed frame changes only when it is replaced (``obs_replaced``) and, for its
        lightning, when its lightning slot becomes complete; a forecast lead only when its run is
        rewritten (``written_at``). So a new frame leaves every cached tile of the other frames
        valid. A forecast ref without ``written_at``: the store's version (always safe).
        """
        if ref.is_forecast:
            return f"run@{ref.written_at.isoformat()}" if ref.written_at is not None else f"fc:{self.fc_version}"
        if layer == "rain":
            return f"obs:{self.obs_replaced}"
        return f"obs:{self.obs_replaced}:{'L' if ref.time in self.lightning_times else '-'}"

    def modified_of(self, ref: FrameRef) -> float:
        """Last-Modified (POSIX seconds) of the content of ``ref``."""
        if ref.is_forecast and ref.written_at is not None:
            return posix_seconds(ref.written_at)
        return self.obs_modified


def posix_seconds(t: pd.Timestamp) -> float:
    t = pd.Timestamp(t)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return t.timestamp()


def _local_path(url: str) -> Path | None:
    """The directory of a local store URL (plain path or ``file://``), None for object storage."""
    if storage.is_remote(url):
        return None
    return Path(url.split("://", 1)[1] if "://" in url else url)


class DataAccess:
    """Lazily opened stores, snapshots, key resolution and cached reads for the routes.

    Blocking methods (store I/O) are meant for worker threads; the ``*_async`` methods and
    :meth:`current` are cheap enough for the event loop and go to a thread only on a miss.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._obs = None
        self._fc: ForecastStoreLike | None = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._rechecking = False
        self._snapshot: Snapshot | None = None
        #: (snapshot, monotonic time, unchanged?) of the last check of its change stamps: reused by
        #: the requests of the next stamp_reuse_s whatever it found (a burst after new data reads
        #: them once too, not once per request while the refresh runs)
        self._stamps_checked: tuple[Snapshot | None, float, bool] = (None, 0.0, True)
        #: monotonic time the running refresh started (None: none running)
        self._refresh_started: float | None = None
        budget = settings.field_cache_mb * 2**20
        #: decoded fields and their colour levels (tiles), a few per frame
        self.fields: LRUCache[np.ndarray] = LRUCache(max(64, settings.cache_items), max_bytes=budget // 2)
        #: rendered tiles, maps and netCDF files (CachedBody)
        self.responses: LRUCache[CachedBody] = LRUCache(settings.cache_items, max_bytes=budget // 4)
        #: point series (JSON after the lat/lon fields), keyed on versions and grid cell
        self.points: LRUCache[bytes] = LRUCache(max(1024, settings.cache_items * 8), max_bytes=budget // 16)
        #: whole-window stacks for point series (a few entries: they are large)
        self.stacks: LRUCache[object] = LRUCache(4, max_bytes=budget // 2)
        #: small JSON documents (frame index, run metadata) keyed on the versions
        self.objects: LRUCache[object] = LRUCache(64)
        #: resolved time keys, keyed on the version of their store
        self.refs: LRUCache[FrameRef] = LRUCache(1024)
        self._samplers: dict[str, object] = {}
        self._bbox: tuple[Grid, list[float]] | None = None
        self._to_grid: tuple[Grid, object] | None = None
        self._flights: dict[Hashable, asyncio.Future] = {}
        # files of the cheap change stamps (local stores only; see the module docstring)
        obs_root, fc_root = _local_path(settings.store), _local_path(str(settings.forecast_store))
        self._obs_meta = os.path.join(obs_root, "zarr.json") if obs_root is not None else None
        self._fc_complete = os.path.join(fc_root, "complete") if fc_root is not None else None
        self._fc_meta = os.path.join(fc_root, "zarr.json") if fc_root is not None else None
        self._limiters: dict[int, Any] = {}
        #: called in the refreshing thread with a snapshot of new data before requests see it:
        #: documents every dashboard asks for after new data are built there, once (see app.py)
        self.warmers: list[Callable[[Snapshot], None]] = []

    # -- stores --------------------------------------------------------------------------
    def obs(self):  # -> ObservationStore
        """The observation store (read-only), opened on first use; Unavailable until it exists."""
        if self._obs is None:
            from nowcast.store import ObservationStore, StoreError

            with self._lock:
                if self._obs is None:
                    try:
                        self._obs = ObservationStore.open(self.settings.store, mode="r", storage_options=self.settings.store_options)
                    except StoreError as exc:
                        raise Unavailable(f"observation store not available yet: {exc}") from exc
        return self._obs

    def forecasts(self) -> ForecastStoreLike | None:
        """The forecasts store, or None until the inference loop has created it."""
        if self._fc is None:
            with self._lock:
                if self._fc is None:
                    try:
                        self._fc = ForecastStore.open(self.settings.forecast_store, storage_options=self.settings.forecast_store_options)
                    except ForecastStoreError:
                        return None
        return self._fc

    def grid(self) -> Grid:
        return self.obs().grid

    def bbox_lonlat(self) -> list[float]:
        """[lon_min, lat_min, lon_max, lat_max] of the grid (computed once per grid)."""
        grid = self.grid()
        if self._bbox is None or self._bbox[0] is not grid:
            self._bbox = (grid, [float(v) for v in grid.bbox_lonlat()])
        return list(self._bbox[1])

    # -- snapshots -------------------------------------------------------------------------
    def _obs_stamp(self) -> bytes | None:
        """Bytes of the observation store's root metadata (local stores), None when unknown."""
        if self._obs_meta is None:
            return None
        try:
            with open(self._obs_meta, "rb") as f:
                return f.read()
        except OSError:
            return None

    def _fc_stamp(self) -> tuple | None:
        """Names of the forecast store's completion markers and ``stat`` of the newest (local stores)."""
        folder = self._fc_complete
        if folder is None:
            return None
        try:
            names = tuple(sorted(os.listdir(folder)))
        except OSError:
            return ("absent", os.path.exists(self._fc_meta or ""))
        newest = next((n for n in reversed(names) if n.endswith(".json") and not n.startswith(".")), None)
        if newest is None:
            return names
        try:
            st = os.stat(os.path.join(folder, newest))
        except OSError:
            return (names, None)
        return (names, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def current(self) -> Snapshot | None:
        """The snapshot when still valid (cheap: no store API call), else None (call :meth:`refresh`).

        Local stores: valid while both change stamps are unchanged (a check is reused for
        ``stamp_reuse_s``, so a burst of requests reads them once); when ``store_poll_s`` has
        passed as well, the versions are re-read through the store API in a background thread
        while this snapshot keeps serving (its stamps say nothing changed). Object storage:
        valid for ``store_poll_s``.
        """
        snap = self._snapshot
        if snap is None:
            return None
        now = time.monotonic()
        stale = now - snap.checked_at > self.settings.store_poll_s
        if snap.obs_stamp is None or snap.fc_stamp is None:
            return None if stale else snap
        checked_for, checked_at, unchanged = self._stamps_checked
        if checked_for is not snap or now - checked_at > self.settings.stamp_reuse_s:
            unchanged = self._obs_stamp() == snap.obs_stamp and self._fc_stamp() == snap.fc_stamp
            self._stamps_checked = (snap, now, unchanged)
        if not unchanged:
            return None
        if stale:
            self._recheck_in_background()
        return snap

    def _recheck_in_background(self) -> None:
        with self._lock:
            if self._rechecking:
                return
            self._rechecking = True

        def run() -> None:
            try:
                self.refresh(force=True)
            except Exception as exc:  # noqa: BLE001 - the next request refreshes in the foreground
                log.warning("background re-check of the store versions failed: %s", exc)
            finally:
                self._rechecking = False

        threading.Thread(target=run, name="nowcast-version-recheck", daemon=True).start()

    def refresh(self, force: bool = False) -> Snapshot:
        """Re-read both stores' versions, newest frame and newest run (blocking: store I/O)."""
        with self._refresh_lock:
            snap = None if force else self.current()  # another thread may have refreshed while this one waited
            if snap is not None:
                return snap
            self._refresh_started = time.monotonic()
            try:
                return self._read_snapshot()
            finally:
                self._refresh_started = None

    def _read_snapshot(self) -> Snapshot:
        """Read both stores' versions, frame lists and newest run; when they changed, run the
        warmers and publish the new snapshot (under :meth:`refresh`'s lock)."""
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        # stamps first: a write landing during the reads below changes them again
        obs_stamp, fc_stamp = self._obs_stamp(), self._fc_stamp()
        obs = self.obs()
        obs_version = obs.version
        last = obs.last_complete()
        fc = self.forecasts()
        run = fc.latest() if fc is not None else None
        fc_version = fc.version if fc is not None else "none"
        if run is not None:  # a run replaced under the same init time (admin re-forecast) is a new version
            fc_version = f"{fc_version}@{run.written_at.isoformat()}"
        # the frame lists, read here once per new frame (not by the requests that resolve its keys)
        prev = self._snapshot
        if prev is not None and prev.obs_version == obs_version:
            replaced, obs_times, lightning_times = prev.obs_replaced, prev.obs_times, prev.lightning_times
        else:
            replaced = obs.replacements
            lists = obs.complete_times((dims.RAIN_RATE, dims.LIGHTNING))
            obs_times, lightning_times = lists[dims.RAIN_RATE], lists[dims.LIGHTNING]
        # a remote store has no mtime: its newest frame's valid time is stable across workers
        modified = posix_seconds(pd.Timestamp(last)) if last is not None else 0.0
        if self._obs_meta is not None:
            try:
                modified = os.stat(self._obs_meta).st_mtime
            except OSError:
                pass
        snap = Snapshot(
            obs_version=obs_version,
            last_complete=pd.Timestamp(last) if last is not None else None,
            obs_modified=modified,
            fc_version=fc_version,
            latest_run=run,
            obs_stamp=obs_stamp,
            fc_stamp=fc_stamp,
            checked_at=time.monotonic(),
            obs_replaced=replaced,
            obs_times=obs_times,
            lightning_times=lightning_times,
        )
        changed = prev is None or snap.versions != prev.versions
        if changed:
            if prev is not None and prev.fc_version != snap.fc_version:
                self._carry_forecast_keys(prev, snap)
            for warm in self.warmers:  # before publishing: requests waiting on this refresh find them built
                try:
                    warm(snap)
                except Exception as exc:  # noqa: BLE001 - the requests build (and report) it themselves
                    log.debug("warming %s skipped: %s", getattr(warm, "__name__", warm), exc)
        self._snapshot = snap
        if changed:
            log.debug(
                "store versions now %s / %s: refresh and warmers took %.1f ms (%.1f ms CPU in this thread)",
                obs_version, fc_version, 1e3 * (time.perf_counter() - wall0), 1e3 * (time.thread_time() - cpu0),
            )
            if self.settings.prewarm_tiles:
                self._prewarm_in_background(snap)
        return snap

    def _carry_forecast_keys(self, prev: Snapshot, snap: Snapshot, limit: int = 64) -> None:
        """Resolve for ``snap`` the fixed forecast keys last resolved under ``prev`` (the leads
        dashboards are showing), before ``snap`` is published: otherwise the first request of each
        waits for a store read after every new run. Runs gone since are skipped."""
        keys = [k for v, k in self.refs.keys() if v == prev.fc_version and "+" in k][-limit:]
        runs: dict[pd.Timestamp, RunInfo] = {}  # one marker read per run, however many of its leads are in use
        for key in keys:
            try:
                self._resolve_run_lead(key, snap, runs)
            except (NotFound, BadRequest):
                continue

    def _prewarm_in_background(self, snap: Snapshot) -> None:
        """Decode the frames of the index into colour levels, in a background thread.

        Newest observed frame first, then every lead of the newest run, then the older observed
        frames of ``/v1/frames`` newest first: the tiles a dashboard asks for after a new frame
        and while animating, so a first tile then costs only its own sampling and encoding.
        As many as fit in a quarter of the field cache's bytes and entries (large grids warm
        the first frames only).
        """
        refs: list[FrameRef] = []
        if snap.last_complete is not None:
            refs.append(FrameRef(snap.last_complete, None, immutable=True))
        if snap.latest_run is not None:
            run = snap.latest_run
            refs += [FrameRef(run.init_time, m, immutable=True, model=run.model, written_at=run.written_at) for m in run.lead_minutes()]
        try:
            cells = int(np.prod(self.grid().shape))
        except Unavailable:
            return
        older = snap.obs_times if snap.last_complete is None else snap.obs_times[snap.obs_times < snap.last_complete]
        refs += [FrameRef(t, None, immutable=True) for t in reversed(older[-(self.settings.frames_in_index - 1) :])] if self.settings.frames_in_index > 1 else []
        budget = self.fields.max_bytes or 0
        per_ref = len(LAYERS) * 2  # a field and its levels per layer
        fit = min(self.fields.max_items // 2, budget // 4 // max(1, cells * 5 // 2)) // per_ref  # float32 + uint8 per cell
        refs = refs[: max(0, fit)]
        if not refs:
            return

        def run() -> None:
            wall0, cpu0 = time.perf_counter(), time.thread_time()
            for ref in refs:
                for layer in LAYERS:
                    if self._snapshot is not snap:  # newer data: that refresh warms its own frames
                        log.debug("prewarm of %s / %s stopped by newer data", *snap.versions)
                        return
                    t0 = time.perf_counter()
                    try:
                        self.levels(ref, layer, snap.content_version(ref, layer), snap)
                    except Exception as exc:  # noqa: BLE001 - a request will report it
                        log.debug("prewarm of %s %s skipped: %s", ref.key, layer, exc)
                    yield_to_requests(time.perf_counter() - t0, self.settings.background_share)
            log.debug(
                "prewarmed %d frames x %d layers for %s / %s in %.2f s (%.1f ms CPU)",
                len(refs), len(LAYERS), *snap.versions, time.perf_counter() - wall0, 1e3 * (time.thread_time() - cpu0),
            )

        threading.Thread(target=run, name="nowcast-prewarm", daemon=True).start()

    def snapshot(self) -> Snapshot:
        """The current snapshot (blocking when it must be refreshed)."""
        return self.current() or self.refresh()

    async def snapshot_async(self) -> Snapshot:
        """The current snapshot; a refresh runs in a worker thread, once for all the requests waiting on it.

        When the stores have changed, a request waits at most ``refresh_wait_s`` for the new snapshot
        (which the refresh publishes once its :attr:`warmers` ran) and is otherwise answered from the
        previous one: its data are still there, and a burst of requests then does not queue behind
        the reads of the new data. A request arriving when the refresh has already run longer than
        ``refresh_wait_s`` is answered from the previous snapshot without waiting. A client polling
        alone gets the new data at once.
        """
        snap = self.current()
        if snap is None:
            previous, started = self._snapshot, self._refresh_started
            if previous is not None and started is not None and time.monotonic() - started > self.settings.refresh_wait_s:
                return previous
            flight = self._single_flight(("refresh",), self.refresh)
            if previous is None:
                return await flight
            try:
                snap = await asyncio.wait_for(flight, self.settings.refresh_wait_s)
            except TimeoutError:
                return previous
        return snap

    def versions(self) -> tuple[str, str]:
        """(observation store version, forecasts store version) - the cache key prefix."""
        return self.snapshot().versions

    def sampler(self):  # -> TileSampler
        from service.tiles import TileSampler

        grid = self.grid()
        key = f"{grid.shape}:{grid.x[0]}:{grid.y[0]}"
        s = self._samplers.get(key)
        if s is None:
            s = TileSampler(grid, max_items=self.settings.tile_index_cache)
            self._samplers = {key: s}
        return s  # type: ignore[return-value]

    # -- threads -----------------------------------------------------------------------------
    def _limiter(self):  # -> anyio.CapacityLimiter of this event loop
        import anyio

        loop = id(asyncio.get_running_loop())
        lim = self._limiters.get(loop)
        if lim is None:
            lim = anyio.CapacityLimiter(self.settings.render_threads)
            self._limiters = {loop: lim}
        return lim

    async def in_thread(self, fn: Callable[[], T]) -> T:
        """Run blocking ``fn`` in a worker thread (at most ``render_threads`` at once)."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(fn, limiter=self._limiter())

    async def cached(self, cache: LRUCache[T], key: Hashable, compute: Callable[[], T]) -> T:
        """``cache[key]``, computed once in a worker thread on a miss.

        Concurrent misses of the same key share one computation (single flight), so a burst of
        requests for a new tile renders it once; a cancelled request does not cancel it.
        """
        value = cache.get(key)
        if value is not None:
            return value

        def run() -> T:
            out = compute()
            cache.put(key, out)
            return out

        return await self._single_flight((id(cache), key), run)

    async def _single_flight(self, key: Hashable, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread, shared by every concurrent caller with the same ``key``
        (errors too); a cancelled caller does not cancel it."""
        loop = asyncio.get_running_loop()
        flight_key = (id(loop), key)
        task = self._flights.get(flight_key)
        if task is None:
            task = loop.create_task(self.in_thread(fn))
            self._flights[flight_key] = task
            task.add_done_callback(lambda _t: self._flights.pop(flight_key, None))
        return await asyncio.shield(task)

    # -- key resolution --------------------------------------------------------------------
    def resolve(self, key: str, snap: Snapshot | None = None) -> FrameRef:
        """Resolve a time key (see the module docstring); BadRequest if malformed, NotFound if absent (blocking)."""
        snap = snap or self.snapshot()
        ref = self.resolve_cached(key, snap)
        return ref if ref is not None else self._resolve_run_lead(key, snap)

    async def resolve_async(self, key: str, snap: Snapshot) -> FrameRef:
        """:meth:`resolve` that reads the stores in a worker thread when the key is not cached."""
        ref = self.resolve_cached(key, snap)
        if ref is None:  # one store read per key and versions, however many requests ask at once
            ref = await self._single_flight(("resolve", snap.versions, key), lambda: self._resolve_run_lead(key, snap))
        return ref

    def resolve_cached(self, key: str, snap: Snapshot) -> FrameRef | None:
        """The resolution of ``key`` when it needs no store I/O ('latest' keys, cached fixed keys), else None."""
        m = _KEY_RE.match(key)
        if m is None or _KEY_STRICT.match(key) is None:
            raise BadRequest(f"malformed time key {key!r}: use {TIME_KEY_HELP}")
        base, lead = m.group("base"), m.group("lead")
        lead_minutes = int(lead) if lead is not None else None
        if lead_minutes == 0:
            lead_minutes = None  # lead 0 is the observation at init time
        if base == "latest":
            if lead_minutes is None:
                if snap.last_complete is None:
                    raise NotFound("no observed frame yet")
                return FrameRef(snap.last_complete, None, immutable=False)
            run = snap.latest_run
            if run is None:
                raise NotFound("no forecast yet")
            self._check_lead(run, lead_minutes)
            return FrameRef(run.init_time, lead_minutes, immutable=False, model=run.model, written_at=run.written_at)
        cache_key = (snap.fc_version if lead_minutes else snap.obs_version, key)
        ref = self.refs.get(cache_key)
        if ref is not None:
            return ref
        run = snap.latest_run
        if lead_minutes is not None and run is not None and base == time_key(run.init_time):  # the newest run: known
            self._check_lead(run, lead_minutes)
            ref = FrameRef(run.init_time, lead_minutes, immutable=True, model=run.model, written_at=run.written_at)
        elif lead_minutes is None:
            t = parse_key_time(base, key)
            if t not in snap.obs_times:
                raise NotFound(f"no observed frame at {iso(t)}")
            ref = FrameRef(t, None, immutable=True)
        else:
            return None
        self.refs.put(cache_key, ref)
        return ref

    def _resolve_run_lead(self, key: str, snap: Snapshot, runs: dict[pd.Timestamp, RunInfo] | None = None) -> FrameRef:
        """A fixed key of a lead of a run other than the newest (the only keys :meth:`resolve_cached`
        leaves): a store read of its run's marker, unless ``runs`` holds it already."""
        m = _KEY_RE.match(key)
        assert m is not None and m.group("lead") is not None  # resolve_cached resolved every other key
        t = parse_key_time(m.group("base"), key)
        run = runs.get(t) if runs is not None else None
        if run is None:
            run = self.run_info_at(t)
            if runs is not None:
                runs[t] = run
        lead_minutes = int(m.group("lead"))
        self._check_lead(run, lead_minutes)
        ref = FrameRef(t, lead_minutes, immutable=True, model=run.model, written_at=run.written_at)
        self.refs.put((snap.fc_version, key), ref)
        return ref

    def run_info_at(self, t: pd.Timestamp):  # -> RunInfo
        """The forecast run initialised at ``t``; :class:`NotFound` when there is none."""
        fc = self.forecasts()
        if fc is None or not fc.has(t):
            raise NotFound(f"no forecast run initialised at {iso(t)}")
        try:
            return fc.run_info(t)
        except ForecastStoreError as exc:
            raise NotFound(str(exc)) from exc

    @staticmethod
    def _check_lead(run: RunInfo, lead_minutes: int) -> None:
        if lead_minutes not in run.lead_minutes():
            raise NotFound(
                f"lead {lead_minutes} min not in the run initialised at {iso(run.init_time)}; "
                f"valid leads (min): {', '.join(map(str, run.lead_minutes()))}"
            )

    # -- fields ----------------------------------------------------------------------------
    def field(self, ref: FrameRef, layer: str, version: str | None = None, snap: Snapshot | None = None) -> np.ndarray:
        """The field (y, x) float32 of ``ref`` for ``layer``: rain rate mm/h, or lightning 0..1.

        For observations, the lightning layer is 1 where flashes were observed, 0 where none
        and NaN where there is no lightning data; forecasts give the lightning probability.
        ``version`` is the content version of ``ref`` (:meth:`Snapshot.content_version`; default:
        in the current snapshot). With ``snap``, the point-series stacks read at it are sliced when
        they hold the frame (:meth:`field_from_stacks`) instead of reading the store.
        """
        if layer not in LAYERS:
            raise NotFound(f"unknown layer {layer!r}; valid: {', '.join(LAYERS)}")
        if version is None:
            version = self.snapshot().content_version(ref, layer)
        cache_key = ("field", version, ref.key, layer)

        def compute() -> np.ndarray:
            sliced = self.field_from_stacks(ref, layer, snap) if snap is not None else None
            if sliced is not None:
                return sliced
            if ref.is_forecast:
                fc = self.forecasts()
                if fc is None:
                    raise NotFound("no forecast yet")
                var = dims.RAIN_RATE if layer == "rain" else dims.LIGHTNING_PROBABILITY
                try:
                    return fc.read_lead(ref.time, pd.Timedelta(minutes=ref.lead_minutes or 0), var)
                except ForecastStoreError as exc:
                    raise NotFound(str(exc)) from exc
            ds = self.obs().window(ref.time, 1)
            return _observed_field(layer, ds[dims.RAIN_RATE if layer == "rain" else dims.LIGHTNING].values[0])

        return self.fields.get_or_compute(cache_key, compute)

    def field_from_stacks(self, ref: FrameRef, layer: str, snap: Snapshot) -> np.ndarray | None:
        """:meth:`field` of ``ref`` sliced from the point-series stacks in memory (a run's stack,
        keyed on its init time and write time, so also the previous run's after a new one; the last
        hour of frames at ``snap``), None when they do not hold it. The refresh reads those stacks
        anyway; reading each lead again from the store cost ~20 ms of mostly GIL-held zarr work per
        field, 30 fields per run, beside the requests in flight."""
        if ref.is_forecast:  # any run whose stack is still in memory: the newest, or the one before it
            if ref.written_at is None:
                return None
            stack = self.stacks.get(_fc_stack_key(run_key(ref.time), ref.written_at))
            if stack is None:
                return None
            leads, rain, prob = stack
            at = np.flatnonzero(leads == pd.Timedelta(minutes=ref.lead_minutes or 0))
            if at.size == 0:
                return None
            return np.array((rain if layer == "rain" else prob)[int(at[0])], dtype=np.float32)
        for key in self.stacks.keys():
            if key[0] != "obs-stack" or key[1] != snap.obs_version:
                continue
            stack = self.stacks.get(key)
            if stack is None:
                continue
            times, rain, counts = stack  # type: ignore[misc]
            at = np.flatnonzero(times == ref.time)
            if at.size:
                return _observed_field(layer, (rain if layer == "rain" else counts)[int(at[0])])
        return None

    def levels(self, ref: FrameRef, layer: str, version: str | None = None, snap: Snapshot | None = None) -> np.ndarray:
        """Colour levels (y * x,) uint8 of the field of ``ref`` (tiles gather from them), cached like the field."""
        from service.tiles import level_field

        if version is None:
            version = self.snapshot().content_version(ref, layer)
        return self.fields.get_or_compute(("levels", version, ref.key, layer), lambda: level_field(self.field(ref, layer, version, snap), layer))

    def observed_stack(self, last: pd.Timestamp, n: int, version: str | None = None) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
        """The ``n`` slots ending at ``last``: (times, rain (n, y, x), lightning (n, y, x)), cached per store version.

        Point series index into these stacks, so a burst of point requests reads the store once.
        """
        obs_v = version if version is not None else self.snapshot().obs_version
        key = _obs_stack_key(last, n, obs_v)

        def compute():  # noqa: ANN202
            ds = self.obs().window(last, n)
            return (
                pd.DatetimeIndex(ds[dims.TIME].values),
                np.asarray(ds[dims.RAIN_RATE].values, dtype=np.float32),
                np.asarray(ds[dims.LIGHTNING].values, dtype=np.float32),
            )

        return self.stacks.get_or_compute(key, compute)  # type: ignore[return-value]

    def observed_stack_cached(self, last: pd.Timestamp, n: int, version: str) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray] | None:
        """:meth:`observed_stack` when it is in memory, else None (no store read)."""
        return self.stacks.get(_obs_stack_key(last, n, version))  # type: ignore[return-value]

    def forecast_stack_cached(self, run: RunInfo) -> tuple[pd.TimedeltaIndex, np.ndarray, np.ndarray] | None:
        """:meth:`forecast_stack` when it is in memory, else None (no store read)."""
        return self.stacks.get(_fc_stack_key(run.key, run.written_at))  # type: ignore[return-value]

    def forecast_stack(self, run: RunInfo) -> tuple[pd.TimedeltaIndex, np.ndarray, np.ndarray]:
        """All leads of a run: (leads, rain (lead, y, x), lightning probability (lead, y, x)), cached (runs are immutable)."""
        fc = self.forecasts()
        if fc is None:
            raise NotFound("no forecast yet")
        key = _fc_stack_key(run.key, run.written_at)

        def compute():  # noqa: ANN202
            try:  # read_run re-checks the completion marker: a run deleted mid-read is an error, not NaN
                return fc.read_run(run.init_time)
            except (ForecastStoreError, FileNotFoundError, OSError, KeyError) as exc:
                raise NotFound(f"forecast run {run.key} is no longer available: {exc}") from exc

        return self.stacks.get_or_compute(key, compute)  # type: ignore[return-value]

    def raw_observation(self, t: pd.Timestamp):  # -> xr.Dataset
        """The observed Dataset (time=1, y, x) at ``t`` (rain_rate, lightning counts)."""
        return self.obs().window(t, 1)

    def point_index(self, lat: float, lon: float) -> tuple[int, int]:
        """(row, col) of the cell containing lat/lon; NotFound naming the domain when outside."""
        grid = self.grid()
        if self._to_grid is None or self._to_grid[0] is not grid:
            from pyproj import Transformer

            self._to_grid = (grid, Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True))
        gx, gy = self._to_grid[1].transform(float(lon), float(lat), errcheck=False)
        inside = math.isfinite(gx) and math.isfinite(gy)
        if inside:
            r, c, ok = grid.index_of(gx, gy)
            row, col, inside = int(r), int(c), bool(ok)
        if not inside:
            lon0, lat0, lon1, lat1 = self.bbox_lonlat()
            raise NotFound(
                f"point lat={lat}, lon={lon} is outside the domain "
                f"(lon {lon0:.3f}..{lon1:.3f}, lat {lat0:.3f}..{lat1:.3f}, grid {grid.shape[0]}x{grid.shape[1]})"
            )
        return row, col


def _observed_field(layer: str, values: np.ndarray) -> np.ndarray:
    """The field (y, x) float32 of an observed frame's ``values`` (rain rate, or lightning counts) for ``layer``:
    rain rate as stored; lightning 1 where flashes were observed, 0 where none, NaN where no data."""
    if layer == "rain":
        return np.array(values, dtype=np.float32)
    counts = np.asarray(values, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(counts), np.nan, (counts > 0).astype(np.float32)).astype(np.float32)


def _obs_stack_key(last: pd.Timestamp, n: int, version: str) -> tuple:
    return ("obs-stack", version, pd.Timestamp(last), n)


def _fc_stack_key(key: str, written_at: pd.Timestamp) -> tuple:
    """The stacks-cache key of the run ``key`` as written at ``written_at`` (its content version)."""
    return ("fc-stack", key, written_at)


def parse_key_time(base: str, key: str) -> pd.Timestamp:
    """The UTC time of a ``YYYYmmddTHHMM`` key part; BadRequest saying what is expected."""
    if _KEY_STRICT.match(base) is None:
        raise BadRequest(f"malformed time key {key!r}: use {TIME_KEY_HELP}")
    try:
        return pd.Timestamp(pd.to_datetime(base, format=KEY_TIME_FORMAT))
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(
            f"invalid date in time key {key!r}: {base[:4]}-{base[4:6]}-{base[6:8]} does not exist; "
            "use a real UTC date-time YYYYmmddTHHMM, e.g. 20250601T1200"
        ) from None
