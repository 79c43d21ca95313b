"""The forecasts store: one Zarr group per forecast run, published atomically, with retention.

Layout on disk (a local directory)::

    <root>/zarr.json                    root group; attrs: format, grid (Grid JSON), cadence
    <root>/runs/<KEY>/                  one run: Zarr group written by xarray, variables
                                        rain_rate, lightning_probability (init_time=1, lead_time, y, x)
    <root>/complete/<KEY>.json          the run's "complete" marker (model, version, leads, ...)

``KEY`` is the init time as ``YYYYmmddTHHMMSS`` (UTC). A run is written first and its marker
after it (marker files are written to a temporary name and renamed, which is atomic on a
local file system), so readers list complete runs from the markers only and never see a
half-written run. Retention deletes the marker first and the data after it.

Logically the store is ``(init_time, lead_time, y, x)``; :meth:`ForecastStore.dataset`
assembles that view from the retained runs. The inference loop is the single writer.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims
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

    @property
    def key(self) -> str:
        return run_key(self.init_time)

    def lead_minutes(self) -> list[int]:
        return [int(lead / pd.Timedelta(minutes=1)) for lead in self.leads]


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ForecastStore:
    """A directory of forecast runs on one grid; see the module docstring for the layout.

    Thread-safe for one writer and many readers in the same or other processes.
    Opened runs are kept in a small bounded cache (runs are immutable once complete).
    """

    def __init__(self, root: Path, grid: Grid, attrs: dict[str, Any]) -> None:
        self.root = root
        self.grid = grid
        self.attrs = attrs
        self._open_runs: OrderedDict[str, xr.Dataset] = OrderedDict()
        self._lock = threading.Lock()
        self._max_open = 8

    # -- construction ------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, grid: Grid) -> ForecastStore:
        """Create an empty store at ``path`` for forecasts on ``grid``; fails if it exists."""
        import zarr

        root = Path(path)
        if (root / "zarr.json").exists():
            raise ForecastStoreError(f"{root}: a forecasts store already exists")
        root.mkdir(parents=True, exist_ok=True)
        g = zarr.open_group(str(root), mode="w")
        g.attrs.update({"format": FORMAT, "grid": grid.to_json()})
        (root / "runs").mkdir(exist_ok=True)
        (root / "complete").mkdir(exist_ok=True)
        return cls.open(root)

    @classmethod
    def open(cls, path: str | Path) -> ForecastStore:
        """Open an existing store; raises ForecastStoreError naming the path if it is not one."""
        root = Path(path)
        meta = root / "zarr.json"
        if not meta.is_file():
            raise ForecastStoreError(f"{root}: not a forecasts store (no zarr.json)")
        try:
            attrs = json.loads(meta.read_text()).get("attributes", {})
        except (OSError, json.JSONDecodeError) as exc:
            raise ForecastStoreError(f"{root}: unreadable store metadata: {exc}") from exc
        if attrs.get("format") != FORMAT:
            raise ForecastStoreError(f"{root}: not a forecasts store (format {attrs.get('format')!r}, expected {FORMAT!r})")
        (root / "runs").mkdir(exist_ok=True)
        (root / "complete").mkdir(exist_ok=True)
        return cls(root, Grid.from_json(attrs["grid"]), attrs)

    @classmethod
    def open_or_create(cls, path: str | Path, grid: Grid) -> ForecastStore:
        """Open the store at ``path``, creating it for ``grid`` if absent; the grid must match."""
        root = Path(path)
        if (root / "zarr.json").is_file():
            store = cls.open(root)
            if not store.grid.same_as(grid):
                raise ForecastStoreError(
                    f"{root}: existing forecasts store has grid {store.grid.shape} that differs from the "
                    f"observation grid {grid.shape}; remove it or point the service at another path"
                )
            return store
        return cls.create(root, grid)

    # -- reading -----------------------------------------------------------------------
    def _marker(self, key: str) -> Path:
        return self.root / "complete" / f"{key}.json"

    def _run_path(self, key: str) -> Path:
        return self.root / "runs" / key

    def run_keys(self) -> list[str]:
        """Keys of the complete runs, oldest first."""
        out = []
        for p in (self.root / "complete").glob("*.json"):
            if p.name.startswith("."):
                continue
            out.append(p.stem)
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

    def has(self, init_time: object) -> bool:
        return self._marker(run_key(init_time)).is_file()

    def run_info(self, init_time: object) -> RunInfo:
        """Marker metadata of one run; ForecastStoreError when the run is not (or no longer) complete."""
        key = _as_key(init_time)
        try:
            d = json.loads(self._marker(key).read_text())
        except FileNotFoundError:
            raise ForecastStoreError(f"no complete forecast run with init time {key}") from None
        except (OSError, json.JSONDecodeError) as exc:
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

    def open_run(self, init_time: object) -> xr.Dataset:
        """The run as a lazy Dataset (lead_time, y, x) with rain_rate and lightning_probability."""
        key = _as_key(init_time)
        with self._lock:
            ds = self._open_runs.get(key)
            if ds is not None:
                self._open_runs.move_to_end(key)
                return ds
        if not self._marker(key).is_file():
            raise ForecastStoreError(f"no complete forecast run with init time {key}")
        try:
            ds = xr.open_zarr(str(self._run_path(key)), consolidated=False, chunks=None)
        except (FileNotFoundError, OSError, KeyError, ValueError) as exc:
            raise ForecastStoreError(f"forecast run {key} cannot be read: {exc}") from exc
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
            return np.asarray(ds[variable].isel({dims.LEAD_TIME: int(matches[0])}).values, dtype=dims.FLOAT)
        except (FileNotFoundError, OSError, KeyError) as exc:  # removed by retention meanwhile
            raise ForecastStoreError(f"forecast run {run_key(init_time)} is no longer available: {exc}") from exc

    def read_point(self, init_time: object, row: int, col: int) -> dict[str, np.ndarray]:
        """Forecast series at one cell: {variable: (lead_time,) float32}, plus 'lead_time'."""
        ds = self.open_run(init_time)
        out: dict[str, np.ndarray] = {dims.LEAD_TIME: pd.to_timedelta(ds[dims.LEAD_TIME].values).values}
        for v in VARIABLES:
            out[v] = np.asarray(ds[v].isel({dims.Y: row, dims.X: col}).values, dtype=dims.FLOAT)
        return out

    def dataset(self) -> xr.Dataset:
        """All retained complete runs as one lazy Dataset (init_time, lead_time, y, x)."""
        keys = self.run_keys()
        if not keys:
            raise ForecastStoreError(f"{self.root}: no complete forecast runs")
        parts = [xr.open_zarr(str(self._run_path(k)), consolidated=False) for k in keys]
        return xr.concat(parts, dim=dims.INIT_TIME, join="outer")

    # -- writing (single writer) -------------------------------------------------------
    def write(self, forecast: xr.Dataset, *, compute_seconds: float = float("nan"), extra: dict[str, Any] | None = None) -> RunInfo:
        """Publish a forecast Dataset (lead_time, y, x) from a nowcaster; returns the run's info.

        The data are written first, then the run's marker. Rewriting an existing init time
        replaces it (its marker is removed first, so readers never see a mixed run).
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
        marker = self._marker(key)
        if marker.exists():
            marker.unlink()
            with self._lock:
                self._open_runs.pop(key, None)
        run_path = self._run_path(key)
        if run_path.exists():
            shutil.rmtree(run_path, ignore_errors=True)

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
        ds.to_zarr(str(run_path), mode="w", encoding=encoding, consolidated=False, zarr_format=3)

        info = {
            "init_time": init.isoformat(),
            "lead_minutes": [int(x / pd.Timedelta(minutes=1)) for x in pd.to_timedelta(forecast[dims.LEAD_TIME].values)],
            "model": ds.attrs["model"],
            "model_version": ds.attrs["model_version"],
            "written_at": pd.Timestamp.now(tz="UTC").tz_localize(None).isoformat(),
            "compute_seconds": compute_seconds,
            "extra": extra or {},
        }
        _atomic_write_text(marker, json.dumps(info))
        log.info("published forecast run %s (%d leads, model %s)", key, len(info["lead_minutes"]), info["model"])
        return self.run_info(key)

    def apply_retention(self, keep: int | None = None, max_age: pd.Timedelta | None = None, now: object | None = None) -> list[str]:
        """Delete runs beyond the newest ``keep`` or older than ``max_age`` (by init time); returns deleted keys.

        The newest run is never deleted. Marker first, then data.
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
            try:
                self._marker(key).unlink()
            except FileNotFoundError:
                pass
            with self._lock:
                self._open_runs.pop(key, None)
            shutil.rmtree(self._run_path(key), ignore_errors=True)
        # runs without a marker older than a minute are leftovers of an interrupted write
        for p in (self.root / "runs").iterdir():
            if p.name not in keys and not self._marker(p.name).exists():
                try:
                    if time.time() - p.stat().st_mtime > 60:
                        shutil.rmtree(p, ignore_errors=True)
                except FileNotFoundError:
                    pass
        if doomed:
            log.info("retention removed %d forecast runs", len(doomed))
        return sorted(doomed)


def lead_minutes(leads: Sequence[pd.Timedelta]) -> list[int]:
    """Leads as whole minutes."""
    return [int(pd.Timedelta(x) / pd.Timedelta(minutes=1)) for x in leads]
