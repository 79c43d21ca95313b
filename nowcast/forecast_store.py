"""The forecasts store: one Zarr group per forecast run, published atomically, with retention.

Layout (a local directory, or an ``s3://bucket/prefix`` URL on S3-compatible storage)::

    <root>/zarr.json                    root group; attrs: format, grid (Grid JSON), cadence
    <root>/runs/<KEY>/                  one run: Zarr group written by xarray, variables
                                        rain_rate, lightning_probability (init_time=1, lead_time, y, x)
    <root>/complete/<KEY>.json          the run's "complete" marker (model, version, leads, ...)

``KEY`` is the init time as ``YYYYmmddTHHMMSS`` (UTC). A run is written first and its marker
after it, so readers list complete runs from the markers only and never see a half-written
run. A marker is published atomically by :func:`nowcast.durability.write_atomic` (locally an
fsynced temporary file renamed over the target; on object storage one PUT, an object is
visible whole or not at all). The root document is written the same way, in one write with
its attributes, so a creation killed at any point leaves either no store (created again) or
a whole one. A run killed before its marker is redone by the next write of that init time.
Retention deletes the marker first and the data after it (recursively, through fsspec); the
newest run is never deleted.

Object storage goes through :mod:`nowcast.storage`: credentials, endpoint and timeouts come
from the ``storage_options`` argument, then ``NOWCAST_S3_*`` / ``AWS_*`` variables; the
bucket is probed (bounded time) when a store is created or opened, and listings are not
cached, so readers in other processes see new runs.

Logically the store is ``(init_time, lead_time, y, x)``; :meth:`ForecastStore.dataset`
assembles that view from the retained runs. The inference loop is the single writer.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims, durability, storage
from nowcast.grid import Grid

log = logging.getLogger(__name__)

FORMAT = "nowcast-forecasts/1"
KEY_FORMAT = "%Y%m%dT%H%M%S"
VARIABLES = (dims.RAIN_RATE, dims.LIGHTNING_PROBABILITY)


class ForecastStoreError(ValueError):
    """A forecasts store that cannot be opened/written, or a run/lead that does not exist."""


def run_key(init_time: object) -> str:
    """Directory key of a run: its init time (UTC) as ``YYYYmmddTHHMMSS``."""
    return dims.to_utc_timestamp(init_time).strftime(KEY_FORMAT)


def _as_key(init_time: object) -> str:
    """A run key from a key string or anything timestamp-like."""
    if isinstance(init_time, str) and len(init_time) == 15 and init_time[8] == "T" and init_time.replace("T", "").isdigit():
        return init_time
    return run_key(init_time)


def parse_key(key: str) -> pd.Timestamp:
    """Inverse of :func:`run_key`; raises ForecastStoreError on a malformed key."""
    try:
        return pd.Timestamp(pd.to_datetime(key, format=KEY_FORMAT))
    except (ValueError, TypeError) as exc:
        raise ForecastStoreError(f"malformed run key {key!r} (expected {KEY_FORMAT})") from exc


@dataclass(frozen=True)
class RunInfo:
    """Metadata of one complete forecast run (read from its marker)."""

    init_time: pd.Timestamp
    leads: tuple[pd.Timedelta, ...]
    model: str
    model_version: str
    written_at: pd.Timestamp
    #: seconds the forecast took to compute (model call), as measured by the writer
    compute_seconds: float
    extra: dict[str, Any]

    @cached_property
    def key(self) -> str:
        return run_key(self.init_time)

    def lead_minutes(self) -> list[int]:
        return [int(lead / pd.Timedelta(minutes=1)) for lead in self.leads]


def _resolve(url: str, storage_options: dict[str, Any] | None, check: bool = True) -> dict[str, Any] | None:
    """Resolved storage options of ``url`` (None for local paths); ForecastStoreError naming the cause."""
    try:
        return storage.prepare(url, storage_options, check=check)
    except storage.StorageError as exc:
        raise ForecastStoreError(f"forecasts store {exc}") from exc


def _url(path: str | Path) -> str:
    """The store location as a string: a local path or an object-storage URL."""
    text = str(path)
    return text[len("file://") :] if text.startswith("file://") else text


@runtime_checkable
class ForecastStoreLike(Protocol):
    """What readers of a forecast store use (the API's data access, maps, points).

    :class:`ForecastStore` is the implementation; the inference service, its only writer, takes
    the concrete class. Shapes: fields (y, x) float32; runs (lead_time, y, x).
    """

    @property
    def url(self) -> str:
        """Where the store lives (a path or ``s3://`` URL)."""
        ...

    @property
    def grid(self) -> Grid:
        """The grid of every run."""
        ...

    @property
    def version(self) -> str:
        """Changes whenever a run is published or removed (a cache key)."""
        ...

    def init_times(self) -> pd.DatetimeIndex:
        """Init times of the complete runs, ascending."""
        ...

    def latest(self) -> RunInfo | None:
        """The newest complete run, or None."""
        ...

    def has(self, init_time: object) -> bool:
        """Whether a complete run exists for ``init_time``."""
        ...

    def run_info(self, init_time: object) -> RunInfo:
        """Metadata of one run (ForecastStoreError if absent)."""
        ...

    def open_run(self, init_time: object) -> xr.Dataset:
        """One run as a lazy Dataset (lead_time, y, x)."""
        ...

    def read_lead(self, init_time: object, lead: pd.Timedelta, variable: str = dims.RAIN_RATE) -> np.ndarray:
        """One field (y, x) float32 of ``variable`` at ``init_time`` + ``lead``."""
        ...

    def read_run(self, init_time: object) -> tuple[pd.TimedeltaIndex, np.ndarray, np.ndarray]:
        """(leads, rain (lead, y, x) mm/h, lightning probability (lead, y, x)) of one run."""
        ...

    def read_point(self, init_time: object, row: int, col: int) -> dict[str, np.ndarray]:
        """Every lead of every variable at one grid cell."""
        ...


class ForecastStore:
    """A directory (or object-storage prefix) of forecast runs on one grid; see the module docstring.

    Thread-safe for one writer and many readers in the same or other processes.
    Opened runs are kept in a small bounded cache (runs are immutable once complete).
    ``root`` is a :class:`~pathlib.Path` for local stores and the URL string for remote ones;
    ``url`` is always the string form.
    """

    def __init__(
        self, root: str | Path, grid: Grid, attrs: dict[str, Any], storage_options: dict[str, Any] | None = None
    ) -> None:
        self.url = _url(root).rstrip("/") or "/"
        self.remote = storage.is_remote(self.url)
        self.root: str | Path = self.url if self.remote else Path(self.url)
        #: resolved fsspec options (None for local stores)
        self.storage_options = storage_options if self.remote else None
        self.grid = grid
        self.attrs = attrs
        self._fs, self._base = storage.filesystem(self.url, self.storage_options)
        self._base = str(self._base).rstrip("/")
        self._open_runs: OrderedDict[str, xr.Dataset] = OrderedDict()
        self._lock = threading.Lock()
        self._max_open = 8

    # -- construction ------------------------------------------------------------------
    @staticmethod
    def _fs_of(url: str, opts: dict[str, Any] | None) -> tuple[Any, str]:
        fs, base = storage.filesystem(url, opts)
        return fs, str(base).rstrip("/")

    @classmethod
    def create(cls, path: str | Path, grid: Grid, storage_options: dict[str, Any] | None = None) -> ForecastStore:
        """Create an empty store at ``path`` (directory or ``s3://`` URL) for forecasts on ``grid``; fails if it exists."""
        url = _url(path).rstrip("/")
        opts = _resolve(url, storage_options)
        return cls._create(url, grid, opts)

    @classmethod
    def _create(cls, url: str, grid: Grid, opts: dict[str, Any] | None) -> ForecastStore:
        fs, base = cls._fs_of(url, opts)
        try:
            if fs.exists(f"{base}/zarr.json"):
                raise ForecastStoreError(f"{url}: a forecasts store already exists")
            if not storage.is_remote(url):
                root = Path(url)
                root.mkdir(parents=True, exist_ok=True)
                (root / "runs").mkdir(exist_ok=True)
                (root / "complete").mkdir(exist_ok=True)
            durability.crash_point("forecast.create.begun")
            doc = {"zarr_format": 3, "node_type": "group", "attributes": {"format": FORMAT, "grid": grid.to_json()}}
            durability.write_atomic(f"{base}/zarr.json", json.dumps(doc).encode(), fs)  # the commit
        except ForecastStoreError:
            raise
        except Exception as exc:
            raise ForecastStoreError(f"{url}: cannot create forecasts store: {type(exc).__name__}: {exc}") from exc
        log.info("created forecasts store %s (%s)", storage.describe(url, opts), grid.shape)
        return cls._open(url, opts)

    @classmethod
    def open(cls, path: str | Path, storage_options: dict[str, Any] | None = None) -> ForecastStore:
        """Open an existing store; raises ForecastStoreError naming the location if it is not one or unreachable."""
        url = _url(path).rstrip("/")
        return cls._open(url, _resolve(url, storage_options))

    @classmethod
    def _open(cls, url: str, opts: dict[str, Any] | None) -> ForecastStore:
        fs, base = cls._fs_of(url, opts)
        try:
            raw = fs.cat_file(f"{base}/zarr.json")
        except FileNotFoundError:
            raise ForecastStoreError(f"{url}: not a forecasts store (no zarr.json)") from None
        except (OSError, ValueError) as exc:
            raise ForecastStoreError(f"{url}: unreadable store metadata: {exc}") from exc
        try:
            attrs = json.loads(raw).get("attributes", {})
        except (ValueError, AttributeError) as exc:
            raise ForecastStoreError(f"{url}: unreadable store metadata: {exc}") from exc
        if attrs.get("format") != FORMAT:
            raise ForecastStoreError(f"{url}: not a forecasts store (format {attrs.get('format')!r}, expected {FORMAT!r})")
        if not storage.is_remote(url):  # object storage has no directories
            (Path(url) / "runs").mkdir(exist_ok=True)
            (Path(url) / "complete").mkdir(exist_ok=True)
        return cls(url, Grid.from_json(attrs["grid"]), attrs, opts)

    @classmethod
    def open_or_create(
        cls, path: str | Path, grid: Grid, storage_options: dict[str, Any] | None = None
    ) -> ForecastStore:
        """Open the store at ``path``, creating it for ``grid`` if absent; the grid must match."""
        url = _url(path).rstrip("/")
        opts = _resolve(url, storage_options)
        fs, base = cls._fs_of(url, opts)
        if fs.exists(f"{base}/zarr.json"):
            store = cls._open(url, opts)
            if not store.grid.same_as(grid):
                raise ForecastStoreError(
                    f"{url}: existing forecasts store has grid {store.grid.shape} that differs from the "
                    f"observation grid {grid.shape}; remove it or point the service at another path"
                )
            return store
        return cls._create(url, grid, opts)

    # -- locations -----------------------------------------------------------------------
    def _marker(self, key: str) -> str:
        """fsspec path of a run's marker."""
        return f"{self._base}/complete/{key}.json"

    def _run_path(self, key: str) -> str:
        """fsspec path of a run's Zarr group."""
        return f"{self._base}/runs/{key}"

    def _run_url(self, key: str) -> str:
        """Location of a run's Zarr group as given to xarray/zarr (path or URL)."""
        return storage.join(self.url, "runs", key) if self.remote else str(Path(self.url) / "runs" / key)

    def _names(self, folder: str) -> list[str]:
        """Base names of the entries of ``<root>/<folder>`` (empty when it does not exist)."""
        try:
            entries = self._fs.ls(f"{self._base}/{folder}", detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return [str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries]

    # -- reading -----------------------------------------------------------------------
    def run_keys(self) -> list[str]:
        """Keys of the complete runs, oldest first."""
        out = []
        for name in self._names("complete"):
            if name.startswith(".") or not name.endswith(".json"):
                continue
            out.append(name[: -len(".json")])
        return sorted(out)

    def init_times(self) -> pd.DatetimeIndex:
        """Init times of the complete runs (UTC, tz-naive), sorted."""
        return pd.DatetimeIndex([parse_key(k) for k in self.run_keys()]).as_unit("ns")

    def latest(self) -> RunInfo | None:
        """The newest complete run, or None when the store holds none."""
        keys = self.run_keys()
        for key in reversed(keys):
            try:
                return self.run_info(key)
            except ForecastStoreError:  # deleted by retention between listing and reading
                continue
        return None

    def _has_marker(self, key: str) -> bool:
        return bool(self._fs.exists(self._marker(key)))

    def has(self, init_time: object) -> bool:
        return self._has_marker(run_key(init_time))

    def run_info(self, init_time: object) -> RunInfo:
        """Marker metadata of one run; ForecastStoreError when the run is not (or no longer) complete."""
        key = _as_key(init_time)
        try:
            d = json.loads(self._fs.cat_file(self._marker(key)))
        except FileNotFoundError:
            raise ForecastStoreError(f"no complete forecast run with init time {key}") from None
        except (OSError, ValueError) as exc:
            raise ForecastStoreError(f"unreadable marker of run {key}: {exc}") from exc
        return RunInfo(
            init_time=parse_key(key),
            leads=tuple(pd.Timedelta(minutes=m) for m in d["lead_minutes"]),
            model=d.get("model", ""),
            model_version=d.get("model_version", ""),
            written_at=pd.Timestamp(d["written_at"]),
            compute_seconds=float(d.get("compute_seconds", float("nan"))),
            extra=d.get("extra", {}),
        )

    @property
    def version(self) -> str:
        """Changes whenever a run is published or removed (newest key + number of runs)."""
        keys = self.run_keys()
        return f"{keys[-1] if keys else 'none'}:{len(keys)}"

    def _open_zarr(self, key: str, **kwargs: Any) -> xr.Dataset:
        return xr.open_zarr(self._run_url(key), consolidated=False, storage_options=self.storage_options, **kwargs)

    def open_run(self, init_time: object) -> xr.Dataset:
        """The run as a lazy Dataset (lead_time, y, x) with rain_rate and lightning_probability."""
        key = _as_key(init_time)
        with self._lock:
            ds = self._open_runs.get(key)
            if ds is not None:
                self._open_runs.move_to_end(key)
                return ds
        if not self._has_marker(key):
            raise ForecastStoreError(f"no complete forecast run with init time {key}")
        try:
            ds = self._open_zarr(key, chunks=None)
        except (FileNotFoundError, OSError, KeyError, ValueError) as exc:
            raise ForecastStoreError(f"forecast run {key} cannot be read: {exc}") from exc
        except Exception as exc:  # zarr's own "not found" errors
            if type(exc).__name__ in ("GroupNotFoundError", "NodeNotFoundError", "ArrayNotFoundError"):
                raise ForecastStoreError(f"forecast run {key} cannot be read: {exc}") from exc
            raise
        ds = ds.isel({dims.INIT_TIME: 0})
        with self._lock:
            self._open_runs[key] = ds
            while len(self._open_runs) > self._max_open:
                self._open_runs.popitem(last=False)
        return ds

    def read_lead(
        self, init_time: object, lead: pd.Timedelta, variable: str = dims.RAIN_RATE
    ) -> np.ndarray:
        """One forecast field (y, x) float32 for ``init_time`` + ``lead``; ForecastStoreError if absent."""
        if variable not in VARIABLES:
            raise ForecastStoreError(f"unknown forecast variable {variable!r}; valid: {', '.join(VARIABLES)}")
        ds = self.open_run(init_time)
        leads = pd.to_timedelta(ds[dims.LEAD_TIME].values)
        matches = np.flatnonzero(leads == pd.Timedelta(lead))
        if matches.size == 0:
            valid = ", ".join(str(int(x / pd.Timedelta(minutes=1))) for x in leads)
            raise ForecastStoreError(f"lead {pd.Timedelta(lead)} not in run {run_key(init_time)}; valid lead minutes: {valid}")
        try:
            out = np.asarray(ds[variable].isel({dims.LEAD_TIME: int(matches[0])}).values, dtype=dims.FLOAT)
        except (FileNotFoundError, OSError, KeyError) as exc:  # removed by retention meanwhile
            raise ForecastStoreError(f"forecast run {run_key(init_time)} is no longer available: {exc}") from exc
        self._check_still_complete(_as_key(init_time))
        return out

    def _check_still_complete(self, key: str) -> None:
        """Raise ForecastStoreError when the run's marker is gone (after a read from a cached handle).

        Zarr reads a deleted chunk as its fill value (NaN), so data read from a run that
        retention removed meanwhile would look like "no rain data". Retention deletes the
        marker before the data, so a marker that still exists after the read proves it whole.
        """
        if not self._has_marker(key):
            with self._lock:
                self._open_runs.pop(key, None)
            raise ForecastStoreError(f"forecast run {key} is no longer available (removed by retention)")

    def read_run(self, init_time: object) -> tuple[pd.TimedeltaIndex, np.ndarray, np.ndarray]:
        """All leads of a run: (leads, rain_rate (lead_time, y, x), lightning_probability (lead_time, y, x)) float32.

        ForecastStoreError when the run is not complete or was removed while being read.
        """
        ds = self.open_run(init_time)
        try:
            leads = pd.to_timedelta(ds[dims.LEAD_TIME].values)
            rain = np.asarray(ds[dims.RAIN_RATE].values, dtype=dims.FLOAT)
            light = np.asarray(ds[dims.LIGHTNING_PROBABILITY].values, dtype=dims.FLOAT)
        except (FileNotFoundError, OSError, KeyError) as exc:
            raise ForecastStoreError(f"forecast run {_as_key(init_time)} is no longer available: {exc}") from exc
        self._check_still_complete(_as_key(init_time))
        return leads, rain, light

    def read_point(self, init_time: object, row: int, col: int) -> dict[str, np.ndarray]:
        """Forecast series at one cell: {variable: (lead_time,) float32}, plus 'lead_time'."""
        ds = self.open_run(init_time)
        out: dict[str, np.ndarray] = {dims.LEAD_TIME: pd.to_timedelta(ds[dims.LEAD_TIME].values).values}
        for v in VARIABLES:
            out[v] = np.asarray(ds[v].isel({dims.Y: row, dims.X: col}).values, dtype=dims.FLOAT)
        self._check_still_complete(_as_key(init_time))
        return out

    def dataset(self) -> xr.Dataset:
        """All retained complete runs as one lazy Dataset (init_time, lead_time, y, x)."""
        keys = self.run_keys()
        if not keys:
            raise ForecastStoreError(f"{self.url}: no complete forecast runs")
        parts = [self._open_zarr(k) for k in keys]
        return xr.concat(parts, dim=dims.INIT_TIME, join="outer")

    # -- writing (single writer) -------------------------------------------------------
    def _remove(self, path: str) -> None:
        """Delete a file or folder (recursively); missing is fine."""
        try:
            self._fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass

    def _write_marker(self, key: str, text: str) -> None:
        """Publish a run's marker atomically (rename locally, one PUT on object storage)."""
        durability.write_atomic(self._marker(key), text.encode(), self._fs)

    def write(self, forecast: xr.Dataset, *, compute_seconds: float = float("nan"), extra: dict[str, Any] | None = None) -> RunInfo:
        """Publish a forecast Dataset (lead_time, y, x) from a nowcaster; returns the run's info.

        The data are written first, then the run's marker. Rewriting an existing init time
        replaces it without readers ever seeing a mixed run: on a local store the new data are
        staged beside the old run, which stays readable until a swap of a few file operations
        (marker removed, two folder renames, marker written; the old data are deleted after); on object
        storage (no folder rename) the old run's marker and data are removed before writing.
        """
        for v in VARIABLES:
            if v not in forecast:
                raise ForecastStoreError(f"forecast lacks variable {v!r}")
            if forecast[v].dims != dims.FORECAST_DIMS:
                raise ForecastStoreError(f"forecast variable {v!r} has dims {forecast[v].dims}, expected {dims.FORECAST_DIMS}")
        if dims.INIT_TIME not in forecast.coords:
            raise ForecastStoreError("forecast lacks the scalar 'init_time' coordinate")
        if forecast.sizes[dims.Y] != self.grid.shape[0] or forecast.sizes[dims.X] != self.grid.shape[1]:
            raise ForecastStoreError(
                f"forecast shape {(forecast.sizes[dims.Y], forecast.sizes[dims.X])} does not match the store grid {self.grid.shape}"
            )
        init = dims.to_utc_timestamp(forecast[dims.INIT_TIME].values)
        key = run_key(init)
        replacing = self._has_marker(key)
        staged = replacing and not self.remote
        target = f"{self._run_url(key)}.staging-{uuid.uuid4().hex[:12]}" if staged else self._run_url(key)
        if replacing and not staged:
            self._unpublish(key)
        elif not replacing:
            self._remove(self._run_path(key))  # data of an interrupted write (no marker)

        ds = xr.Dataset(
            {v: forecast[v].astype(dims.FLOAT) for v in VARIABLES},
            attrs={"model": str(forecast.attrs.get("model", "")), "model_version": str(forecast.attrs.get("model_version", ""))},
        )
        ds = ds.drop_vars([dims.INIT_TIME]).expand_dims({dims.INIT_TIME: [init.to_datetime64()]})
        if dims.GRID_MAPPING not in ds.coords:
            ds = dims.attach_crs(ds, self.grid.crs)
        ny, nx = self.grid.shape
        encoding = {v: {"chunks": (1, 1, ny, nx)} for v in VARIABLES}
        encoding[dims.LEAD_TIME] = {"units": "minutes", "dtype": "int32"}
        ds.to_zarr(target, mode="w", encoding=encoding, consolidated=False, zarr_format=3, storage_options=self.storage_options)
        durability.crash_point("forecast.write.data")
        retired = None
        if staged:  # swap: the run is hidden only between these few file operations (no data copied)
            self._hide(key)
            retired = f"{self._run_url(key)}.retired-{uuid.uuid4().hex[:12]}"
            os.replace(self._run_url(key), retired)
            os.replace(target, self._run_url(key))
            durability.fsync_dir(Path(self._run_url(key)).parent)

        info = {
            "init_time": init.isoformat(),
            "lead_minutes": [int(x / pd.Timedelta(minutes=1)) for x in pd.to_timedelta(forecast[dims.LEAD_TIME].values)],
            "model": ds.attrs["model"],
            "model_version": ds.attrs["model_version"],
            "written_at": pd.Timestamp.now(tz="UTC").tz_localize(None).isoformat(),
            "compute_seconds": compute_seconds,
            "extra": extra or {},
        }
        self._write_marker(key, json.dumps(info))
        if retired is not None:
            self._remove(retired)  # the replaced data, once the new run is visible
        log.info("published forecast run %s (%d leads, model %s)", key, len(info["lead_minutes"]), info["model"])
        return self.run_info(key)

    def _hide(self, key: str) -> None:
        """Remove a run's marker (readers stop seeing it) and forget its open handle."""
        self._remove(self._marker(key))
        with self._lock:
            self._open_runs.pop(key, None)

    def _unpublish(self, key: str) -> None:
        """Hide a run, then delete its data."""
        self._hide(key)
        self._remove(self._run_path(key))

    def _age_seconds(self, path: str) -> float | None:
        """Seconds since the newest file under ``path`` was written (None when it is gone)."""
        try:
            if not self.remote:
                return time.time() - Path(path).stat().st_mtime
            newest = None
            for meta in self._fs.find(path, detail=True).values():
                t = meta.get("LastModified") or meta.get("mtime")
                if t is not None:
                    ts = pd.Timestamp(t).timestamp() if not isinstance(t, int | float) else float(t)
                    newest = ts if newest is None else max(newest, ts)
            return None if newest is None else time.time() - newest
        except FileNotFoundError:
            return None

    def apply_retention(self, keep: int | None = None, max_age: pd.Timedelta | None = None, now: object | None = None) -> list[str]:
        """Delete runs beyond the newest ``keep`` or older than ``max_age`` (by init time); returns deleted keys.

        The newest run is never deleted. Marker first, then data (recursive delete).
        """
        keys = self.run_keys()
        if len(keys) <= 1:
            return []
        doomed: set[str] = set()
        if keep is not None and keep >= 1 and len(keys) > keep:
            doomed.update(keys[: len(keys) - keep])
        if max_age is not None:
            ref = dims.to_utc_timestamp(now) if now is not None else parse_key(keys[-1])
            doomed.update(k for k in keys[:-1] if ref - parse_key(k) > max_age)
        doomed.discard(keys[-1])
        for key in sorted(doomed):
            self._unpublish(key)
        # runs without a marker older than a minute are leftovers of an interrupted write
        for name in self._names("runs"):
            if name not in keys and not self._has_marker(name):
                age = self._age_seconds(self._run_path(name))
                if age is not None and age > 60:
                    self._remove(self._run_path(name))
        if doomed:
            log.info("retention removed %d forecast runs", len(doomed))
        return sorted(doomed)


def lead_minutes(leads: Sequence[pd.Timedelta]) -> list[int]:
    """Leads as whole minutes."""
    return [int(pd.Timedelta(x) / pd.Timedelta(minutes=1)) for x in leads]
