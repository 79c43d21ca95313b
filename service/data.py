"""Read access of the API to the observation and forecast stores, with version-keyed caches.

Time keys name a frame in URLs:

- ``YYYYmmddTHHMM`` - an observed frame (immutable);
- ``YYYYmmddTHHMM+L`` - lead ``L`` minutes of the forecast run initialised at that time (immutable);
- ``latest`` / ``latest+L`` - the newest observed frame / lead L of the newest run (mutable).

Fields are cached in a bounded LRU under keys that include the store version, so a new
frame or run is visible on the first request after it is published.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nowcast import dims
from nowcast.forecast_store import ForecastStore, ForecastStoreError, RunInfo
from nowcast.grid import Grid
from service.cache import LRUCache
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

KEY_TIME_FORMAT = "%Y%m%dT%H%M"
_KEY_RE = re.compile(r"^(?P<base>latest|\d{8}T\d{4})(?:\+(?P<lead>\d{1,4}))?$")
LAYERS = ("rain", "lightning")


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

    @property
    def is_forecast(self) -> bool:
        return self.lead_minutes is not None

    @property
    def valid_time(self) -> pd.Timestamp:
        return self.time + pd.Timedelta(minutes=self.lead_minutes or 0)

    @property
    def key(self) -> str:
        return time_key(self.time, self.lead_minutes)


class DataAccess:
    """Lazily opened stores, key resolution and cached field reads for the routes."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._obs = None
        self._fc: ForecastStore | None = None
        self._lock = threading.Lock()
        budget = settings.field_cache_mb * 2**20
        self.fields: LRUCache[np.ndarray] = LRUCache(max(8, settings.cache_items // 8), max_bytes=budget // 2)
        self.responses: LRUCache[bytes] = LRUCache(settings.cache_items, max_bytes=budget // 4)
        self.points: LRUCache[object] = LRUCache(max(16, settings.cache_items // 2))
        #: whole-window stacks for point series (a few entries: they are large)
        self.stacks: LRUCache[object] = LRUCache(4, max_bytes=budget // 2)
        #: small JSON-ready objects (frame index) keyed on the versions
        self.objects: LRUCache[object] = LRUCache(16)
        self._samplers: dict[str, object] = {}
        self._bbox: tuple[Grid, list[float]] | None = None
        self._to_grid: tuple[Grid, object] | None = None

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

    def forecasts(self) -> ForecastStore | None:
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
        if getattr(self, "_bbox", None) is None or self._bbox[0] is not grid:
            self._bbox = (grid, [float(v) for v in grid.bbox_lonlat()])
        return list(self._bbox[1])

    def versions(self) -> tuple[str, str]:
        """(observation store version, forecasts store version) - the cache key prefix."""
        fc = self.forecasts()
        return self.obs().version, (fc.version if fc is not None else "none")

    def sampler(self):  # -> TileSampler
        from service.tiles import TileSampler

        grid = self.grid()
        key = f"{grid.shape}:{grid.x[0]}:{grid.y[0]}"
        s = self._samplers.get(key)
        if s is None:
            s = TileSampler(grid, max_items=self.settings.tile_index_cache)
            self._samplers = {key: s}
        return s  # type: ignore[return-value]

    # -- key resolution --------------------------------------------------------------------
    def resolve(self, key: str) -> FrameRef:
        """Resolve a time key (see the module docstring); BadRequest if malformed, NotFound if absent."""
        m = _KEY_RE.match(key)
        if m is None:
            raise BadRequest(
                f"malformed time key {key!r}: use YYYYmmddTHHMM (observed), YYYYmmddTHHMM+LEAD (forecast, minutes), "
                "'latest' or 'latest+LEAD'"
            )
        base, lead = m.group("base"), m.group("lead")
        lead_minutes = int(lead) if lead is not None else None
        if lead_minutes == 0:
            lead_minutes = None  # lead 0 is the observation at init time
        obs = self.obs()
        if base == "latest":
            if lead_minutes is None:
                last = obs.last_complete()
                if last is None:
                    raise NotFound("no observed frame yet")
                return FrameRef(pd.Timestamp(last), None, immutable=False)
            fc = self.forecasts()
            run = fc.latest() if fc is not None else None
            if run is None:
                raise NotFound("no forecast yet")
            self._check_lead(run, lead_minutes)
            return FrameRef(run.init_time, lead_minutes, immutable=False, model=run.model)
        try:
            t = pd.Timestamp(pd.to_datetime(base, format=KEY_TIME_FORMAT))
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"invalid time in key {key!r}: {exc}") from exc
        if lead_minutes is None:
            try:
                present = obs.has(t)
            except Exception as exc:  # not on the cadence
                raise NotFound(f"no observed frame at {iso(t)}: {exc}") from exc
            if not present:
                raise NotFound(f"no observed frame at {iso(t)}")
            return FrameRef(t, None, immutable=True)
        fc = self.forecasts()
        if fc is None or not fc.has(t):
            raise NotFound(f"no forecast run initialised at {iso(t)}")
        run = fc.run_info(t)
        self._check_lead(run, lead_minutes)
        return FrameRef(t, lead_minutes, immutable=True, model=run.model)

    @staticmethod
    def _check_lead(run: RunInfo, lead_minutes: int) -> None:
        if lead_minutes not in run.lead_minutes():
            raise NotFound(
                f"lead {lead_minutes} min not in the run initialised at {iso(run.init_time)}; "
                f"valid leads (min): {', '.join(map(str, run.lead_minutes()))}"
            )

    # -- fields ----------------------------------------------------------------------------
    def field(self, ref: FrameRef, layer: str) -> np.ndarray:
        """The field (y, x) float32 of ``ref`` for ``layer``: rain rate mm/h, or lightning 0..1.

        For observations, the lightning layer is 1 where flashes were observed, 0 where none
        and NaN where there is no lightning data; forecasts give the lightning probability.
        """
        if layer not in LAYERS:
            raise NotFound(f"unknown layer {layer!r}; valid: {', '.join(LAYERS)}")
        obs_v, fc_v = self.versions()
        version = fc_v if ref.is_forecast else obs_v
        cache_key = ("field", version, ref.key, layer)

        def compute() -> np.ndarray:
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
            if layer == "rain":
                return np.asarray(ds[dims.RAIN_RATE].values[0], dtype=np.float32)
            counts = np.asarray(ds[dims.LIGHTNING].values[0], dtype=np.float32)
            with np.errstate(invalid="ignore"):
                return np.where(np.isnan(counts), np.nan, (counts > 0).astype(np.float32)).astype(np.float32)

        return self.fields.get_or_compute(cache_key, compute)

    def observed_stack(self, last: pd.Timestamp, n: int) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
        """The ``n`` slots ending at ``last``: (times, rain (n, y, x), lightning (n, y, x)), cached per store version.

        Point series index into these stacks, so a burst of point requests reads the store once.
        """
        obs_v = self.obs().version
        key = ("obs-stack", obs_v, pd.Timestamp(last), n)

        def compute():  # noqa: ANN202
            ds = self.obs().window(last, n)
            return (
                pd.DatetimeIndex(ds[dims.TIME].values),
                np.asarray(ds[dims.RAIN_RATE].values, dtype=np.float32),
                np.asarray(ds[dims.LIGHTNING].values, dtype=np.float32),
            )

        return self.stacks.get_or_compute(key, compute)  # type: ignore[return-value]

    def forecast_stack(self, run: RunInfo) -> tuple[pd.TimedeltaIndex, np.ndarray, np.ndarray]:
        """All leads of a run: (leads, rain (lead, y, x), lightning probability (lead, y, x)), cached (runs are immutable)."""
        fc = self.forecasts()
        if fc is None:
            raise NotFound("no forecast yet")
        key = ("fc-stack", run.key, run.written_at)

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
        with np.errstate(invalid="ignore"):
            gx, gy = self._to_grid[1].transform(np.array([lon], dtype=float), np.array([lat], dtype=float))
        ok = bool(np.isfinite(gx[0]) and np.isfinite(gy[0]))
        row, col, inside = grid.index_of(np.where(ok, gx, -1e30), np.where(ok, gy, -1e30))
        if not (ok and bool(inside[0])):
            lon0, lat0, lon1, lat1 = self.bbox_lonlat()
            raise NotFound(
                f"point lat={lat}, lon={lon} is outside the domain "
                f"(lon {lon0:.3f}..{lon1:.3f}, lat {lat0:.3f}..{lat1:.3f}, grid {grid.shape[0]}x{grid.shape[1]})"
            )
        return int(row[0]), int(col[0])
