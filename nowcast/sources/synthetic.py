"""A synthetic radar: seeded, realistic-looking rain and lightning fields, analytic in time.

**Synthetic data, not observations.** It is the embedded default source of the live system
(``nowcast serve`` with no configuration) and a seeded test fixture.

Every frame is a closed-form function of ``(seed, time)``: any time can be generated
directly, without generating the frames before it. The field is built in a *Lagrangian*
frame that moves with a spatially uniform, slowly time-varying motion ``(u(t), v(t))``
whose displacement is integrated analytically:

- **Stratiform / multiscale rain**: a Gaussian random field with a power-law spectrum
  (2-D power spectral density ``~ |k|**-beta``, beta = 3 like rainfall fields analysed with
  pysteps), split into three scale bands whose noise is re-drawn on epochs of different
  length (large scales live ~3 h, small scales ~20 min; STEPS-like scale-dependent
  lifetimes). Consecutive epochs are blended with power-preserving weights
  ``cos/sin(pi/2 * s)``, so the field evolves continuously and stays stationary. The field
  is shifted by the displacement with an exact Fourier phase shift (periodic domain ~25 %
  larger than the grid, so wrap-around never shows as a seam). Rain is a log-normal
  transform of the field above a threshold whose wet fraction varies slowly in time
  (about 10-30 % wet, i.e. 70-90 % dry); most wet pixels are below 5 mm/h.
- **Convective cells**: born as a seeded Poisson process in space and time (per 10-min
  bin), each with a lifetime (30-120 min), a Gaussian footprint (sigma 3-8 km) and a peak
  of 20-120 mm/h; intensity follows ``sin(pi * age / lifetime) ** 2`` (growth, maturity,
  decay) and the cells drift with the flow.
- **Lightning**: Poisson flash counts (seeded by ``(seed, time)``) per grid cell and interval,
  tied to the convective cells: a cell is electrically active while it grows and matures (the
  first 60 % of its life; intensity peaks at half-life) and while its core rain rate
  ``_R_EDGE * (peak / _R_EDGE) ** life_factor`` exceeds ``lightning_threshold`` (30 mm/h).
  Its flash rate is ``flash_rate * (core - threshold) / 10 mm/h`` flashes per 4 km^2 per
  5 min, times its footprint (Gaussian shape > 0.3, the convective core region), and only
  where the local rain rate is at least ``lightning_min_rain`` (10 mm/h). Lightning is
  therefore only found in the heavy rain of intense, growing or mature convective cores,
  and moves and grows with them (learnable from the rain history); decaying cells are silent.

Coverage is complete (no NaN). Units: rain rate mm/h, lightning flashes per cell per
interval (``cadence``), both float32 ``(y, x)``.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.fft as sfft
import xarray as xr
from scipy.special import ndtri

from nowcast import dims
from nowcast.grid import Grid
from nowcast.sources.base import Fetched, Item, SourceBase, slots_between

log = logging.getLogger(__name__)

#: origin of the synthetic clock (seconds are counted from here)
_T0 = pd.Timestamp("2000-01-01")
#: (min wavelength km, max wavelength km, epoch length s) of the three scale bands
_BANDS: tuple[tuple[float, float, float], ...] = (
    (64.0, math.inf, 3 * 3600.0),
    (16.0, 64.0, 3600.0),
    (0.0, 16.0, 1200.0),
)
_CELL_BIN_S = 600.0  # cells are born per 10-min bin
_CELL_MAX_LIFE_S = 7200.0
_SEED_OFFSET = 2**40
_R_EDGE = 0.3  # mm/h at the edge of the rain area
_R_SLOPE = 1.3  # log-intensity per standard deviation of the field
_R_MAX = 200.0  # mm/h  # keeps seed sequences non-negative for times before 2000


@dataclass(frozen=True)
class _Cell:
    x: float  # Lagrangian position, metres from the periodic domain origin
    y: float
    birth: float  # seconds since _T0
    life: float  # seconds
    sigma: float  # metres (minor axis)
    aspect: float  # major / minor axis
    angle: float  # radians
    peak: float  # mm/h


class SyntheticRadar:
    """Seeded synthetic rain rate and lightning on a grid; see the module docstring.

    Parameters
    ----------
    grid: target grid (projected CRS in metres); default :meth:`default_grid`.
    seed: random seed; frames are deterministic functions of ``(seed, time)``.
    cadence: interval of the lightning counts (and of :meth:`slots`).
    wet_fraction: mean fraction of the stratiform field that is wet (0-1).
    cell_rate: convective cells born per hour per 10 000 km^2.
    lightning_threshold: core rain rate (mm/h) a cell must exceed to produce flashes.
    flash_rate: flashes per 4 km^2 per 5 min per 10 mm/h of core rain above the threshold.
    lightning_min_rain: local rain rate (mm/h) below which no flash is produced.
    beta: slope of the 2-D power spectral density of the multiscale field.
    mean_speed: mean advection speed, m/s (direction drawn from the seed).
    """

    name = "synthetic"

    def __init__(
        self,
        grid: Grid | None = None,
        seed: int = 0,
        cadence: pd.Timedelta | str = dims.DEFAULT_CADENCE,
        *,
        wet_fraction: float = 0.2,
        cell_rate: float = 1.0,
        lightning_threshold: float = 30.0,
        flash_rate: float = 2.0,
        lightning_min_rain: float = 10.0,
        beta: float = 3.0,
        mean_speed: float = 12.0,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if not 0.0 < wet_fraction < 0.5:
            raise ValueError(f"wet_fraction must be in (0, 0.5), got {wet_fraction}")
        self.grid = grid if grid is not None else self.default_grid()
        self.seed = int(seed)
        self.cadence = pd.Timedelta(cadence)
        if self.cadence <= pd.Timedelta(0):
            raise ValueError(f"cadence must be positive, got {cadence}")
        self.wet_fraction = float(wet_fraction)
        self.cell_rate = float(cell_rate)
        self.lightning_threshold = float(lightning_threshold)
        self.flash_rate = float(flash_rate)
        self.lightning_min_rain = float(lightning_min_rain)
        self.beta = float(beta)

        g = self.grid
        if g.x.size < 2 or g.y.size < 2:
            raise ValueError(f"grid must be at least 2x2 cells, got {g.shape}")
        self._dx, self._dy = g.dx, g.dy  # signed metres per column / row
        ny, nx = g.shape
        self._NY = sfft.next_fast_len(int(math.ceil(ny * 1.25)) + 8, real=True)
        self._NX = sfft.next_fast_len(int(math.ceil(nx * 1.25)) + 8, real=True)
        self._Ly = self._NY * abs(self._dy)  # periodic domain extent, metres
        self._Lx = self._NX * abs(self._dx)

        rng = np.random.default_rng([self.seed, 0])
        direction = rng.uniform(0, 2 * np.pi)
        self._u0 = mean_speed * math.cos(direction)
        self._v0 = mean_speed * math.sin(direction)
        self._amp = rng.uniform(2.0, 5.0, size=2)  # m/s, of u and v
        self._omega = 2 * np.pi / rng.uniform(6 * 3600, 12 * 3600, size=2)
        self._phi = rng.uniform(0, 2 * np.pi, size=2)
        self._wet_omega = 2 * np.pi / rng.uniform(6 * 3600, 10 * 3600)
        self._wet_phi = rng.uniform(0, 2 * np.pi)

        # spectral filters of the bands (rfft layout) and the theoretical field std
        ky = sfft.fftfreq(self._NY, d=abs(self._dy))[:, None]  # cycles per metre
        kx = sfft.rfftfreq(self._NX, d=abs(self._dx))[None, :]
        k = np.sqrt(kx**2 + ky**2)
        k0 = 1.0 / 300e3  # large-scale roll-off at ~300 km
        amp = (k**2 + k0**2) ** (-self.beta / 4.0)
        amp[0, 0] = 0.0
        if self._NY % 2 == 0:
            amp[self._NY // 2, :] = 0.0  # drop Nyquist rows/cols: phase shifts keep them real
        if self._NX % 2 == 0:
            amp[:, -1] = 0.0
        with np.errstate(divide="ignore"):
            wavelength_km = np.where(k > 0, 1e-3 / np.maximum(k, 1e-30), np.inf)
        self._band_filters = [
            np.where((wavelength_km >= lo) & (wavelength_km < hi), amp, 0.0).astype(np.float32)
            for lo, hi, _ in _BANDS
        ]
        # variance of irfft2(amp * rfft2(white)) = sum over the full plane of amp^2 / N
        full_weight = np.full(amp.shape, 2.0)
        full_weight[:, 0] = 1.0
        if self._NX % 2 == 0:
            full_weight[:, -1] = 1.0
        self._std = float(np.sqrt(np.sum(full_weight * amp**2) / (self._NY * self._NX)))
        self._kx_rad = (2 * np.pi * kx).astype(np.float64)  # radians per metre
        self._ky_rad = (2 * np.pi * ky).astype(np.float64)
        self._noise_cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_size = 4 * len(_BANDS)

    # -- grid ----------------------------------------------------------------------------
    @staticmethod
    def default_grid(
        nx: int = 256,
        ny: int = 256,
        resolution: float = 2000.0,
        center_lonlat: tuple[float, float] = (9.5, 46.5),
        crs: str = "EPSG:3035",
    ) -> Grid:
        """A north-up grid of ``ny x nx`` square cells (``resolution`` metres) centred on
        ``center_lonlat`` (default: the Alps) in a projected CRS (default ETRS89-LAEA)."""
        from pyproj import Transformer

        tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        cx, cy = tr.transform(*center_lonlat)
        cx, cy = round(cx / resolution) * resolution, round(cy / resolution) * resolution
        xmin, ymax = cx - nx * resolution / 2, cy + ny * resolution / 2
        return Grid.regular(crs, xmin + resolution / 2, ymax - resolution / 2, resolution, -resolution, nx, ny, name="synthetic-alps")

    # -- motion --------------------------------------------------------------------------
    @staticmethod
    def _seconds(time: object) -> float:
        return (dims.to_utc_timestamp(time) - _T0).total_seconds()

    def motion(self, time: object) -> tuple[float, float]:
        """Advection velocity ``(u, v)`` in m/s (u eastward = +x, v northward = +y) at ``time``."""
        t = self._seconds(time)
        u = self._u0 + self._amp[0] * math.cos(self._omega[0] * t + self._phi[0])
        v = self._v0 + self._amp[1] * math.cos(self._omega[1] * t + self._phi[1])
        return float(u), float(v)

    def _displacement(self, t: float) -> tuple[float, float]:
        """Integral of the motion from _T0 to t (seconds), metres, reduced modulo the domain."""
        dx = self._u0 * t + self._amp[0] / self._omega[0] * (math.sin(self._omega[0] * t + self._phi[0]) - math.sin(self._phi[0]))
        dy = self._v0 * t + self._amp[1] / self._omega[1] * (math.sin(self._omega[1] * t + self._phi[1]) - math.sin(self._phi[1]))
        return dx % self._Lx, dy % self._Ly

    def displacement(self, start: object, end: object) -> tuple[float, float]:
        """Displacement ``(dx, dy)`` in metres of the flow between two times (+x east, +y north)."""
        t0, t1 = self._seconds(start), self._seconds(end)
        out = []
        for i, base in enumerate((self._u0, self._v0)):
            a, w, p = self._amp[i], self._omega[i], self._phi[i]
            out.append(base * (t1 - t0) + a / w * (math.sin(w * t1 + p) - math.sin(w * t0 + p)))
        return float(out[0]), float(out[1])

    def _array_shift(self, t: float) -> tuple[float, float]:
        """Shift of the Lagrangian field at t, metres along (rows, columns) of the array."""
        dxm, dym = self._displacement(t)
        return dym * abs(self._dy) / self._dy, dxm * abs(self._dx) / self._dx

    # -- field components ----------------------------------------------------------------
    def _band_noise(self, band: int, epoch: int) -> np.ndarray:
        key = (band, epoch)
        hit = self._noise_cache.get(key)
        if hit is not None:
            self._noise_cache.move_to_end(key)
            return hit
        rng = np.random.default_rng([self.seed, 1, band, epoch + _SEED_OFFSET])
        white = rng.standard_normal((self._NY, self._NX), dtype=np.float32)
        spec = (sfft.rfft2(white, workers=1) * self._band_filters[band]).astype(np.complex64)
        self._noise_cache[key] = spec
        while len(self._noise_cache) > self._cache_size:
            self._noise_cache.popitem(last=False)
        return spec

    def _gaussian_field(self, t: float) -> np.ndarray:
        """Unit-variance multiscale field (ny, nx) at t seconds, advected by the flow."""
        spec = np.zeros_like(self._band_filters[0], dtype=np.complex64)
        for b, (_, _, period) in enumerate(_BANDS):
            pos = t / period
            epoch = math.floor(pos)
            s = pos - epoch
            w0, w1 = math.cos(0.5 * math.pi * s), math.sin(0.5 * math.pi * s)
            spec += w0 * self._band_noise(b, epoch) + w1 * self._band_noise(b, epoch + 1)
        row_shift_m, col_shift_m = self._array_shift(t)
        phase = np.exp(-1j * (self._kx_rad * col_shift_m + self._ky_rad * row_shift_m)).astype(np.complex64)
        field = sfft.irfft2(spec * phase, s=(self._NY, self._NX), workers=1)
        ny, nx = self.grid.shape
        return field[:ny, :nx] / self._std

    def wet_fraction_at(self, time: object) -> float:
        """Target wet fraction of the stratiform field at ``time`` (slowly varying)."""
        t = self._seconds(time)
        return float(self.wet_fraction * (1.0 + 0.5 * math.sin(self._wet_omega * t + self._wet_phi)))

    def _cells(self, t: float) -> list[_Cell]:
        """Cells alive at t seconds (born in the 10-min bins of the last 2 h)."""
        area_1e4km2 = self._Lx * self._Ly / 1e10
        lam = self.cell_rate * area_1e4km2 * _CELL_BIN_S / 3600.0
        first = math.floor((t - _CELL_MAX_LIFE_S) / _CELL_BIN_S)
        last = math.floor(t / _CELL_BIN_S)
        alive = []
        for j in range(first, last + 1):
            rng = np.random.default_rng([self.seed, 2, j + _SEED_OFFSET])
            n = int(rng.poisson(lam))
            if n == 0:
                continue
            birth = (j + rng.uniform(0, 1, n)) * _CELL_BIN_S
            life = rng.uniform(1800, _CELL_MAX_LIFE_S, n)
            xs = rng.uniform(0, self._Lx, n)
            ys = rng.uniform(0, self._Ly, n)
            sigma = rng.uniform(3000, 8000, n)
            aspect = rng.uniform(1.0, 1.8, n)
            angle = rng.uniform(0, np.pi, n)
            peak = np.clip(rng.lognormal(math.log(45.0), 0.45, n), 20.0, 120.0)
            for i in range(n):
                if birth[i] <= t < birth[i] + life[i]:
                    alive.append(_Cell(xs[i], ys[i], birth[i], life[i], sigma[i], aspect[i], angle[i], peak[i]))
        return alive

    def _render_cells(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Log-space cell bumps (std units) and the electrical activity (ny, nx): per grid cell,
        the largest ``footprint * (core - lightning_threshold) / 10 mm/h`` of the active cells."""
        ny, nx = self.grid.shape
        bumps = np.zeros((ny, nx))
        active = np.zeros((ny, nx))
        row_shift_m, col_shift_m = self._array_shift(t)
        for c in self._cells(t):
            age = (t - c.birth) / c.life
            life_factor = math.sin(math.pi * age) ** 2
            if life_factor < 1e-3:
                continue
            amplitude = math.log(c.peak / _R_EDGE) / _R_SLOPE * life_factor
            core = _R_EDGE * (c.peak / _R_EDGE) ** life_factor  # mm/h of the cell alone at its centre
            strength = (core - self.lightning_threshold) / 10.0 if age < 0.6 else 0.0  # grows, then matures
            col = ((c.x + col_shift_m) % self._Lx) / abs(self._dx)
            row = ((c.y + row_shift_m) % self._Ly) / abs(self._dy)
            rad = 3.5 * c.sigma * c.aspect / abs(self._dx)
            ca, sa = math.cos(c.angle), math.sin(c.angle)
            for col_c in (col, col - self._NX):
                for row_c in (row, row - self._NY):
                    c0, c1 = max(0, int(col_c - rad)), min(nx, int(col_c + rad) + 2)
                    r0, r1 = max(0, int(row_c - rad)), min(ny, int(row_c + rad) + 2)
                    if c0 >= c1 or r0 >= r1:
                        continue
                    dc = ((np.arange(c0, c1) - col_c) * abs(self._dx))[None, :]
                    dr = ((np.arange(r0, r1) - row_c) * abs(self._dy))[:, None]
                    along, across = dc * ca + dr * sa, -dc * sa + dr * ca
                    shape = np.exp(-0.5 * ((along / (c.sigma * c.aspect)) ** 2 + (across / c.sigma) ** 2))
                    bumps[r0:r1, c0:c1] += amplitude * shape
                    if strength > 0:  # intense and growing / mature: electrically active core region
                        np.maximum(active[r0:r1, c0:c1], np.where(shape > 0.3, strength * shape, 0.0), out=active[r0:r1, c0:c1])
        return bumps, active

    # -- public API ----------------------------------------------------------------------
    def frame(self, time: object) -> xr.Dataset:
        """The frame at ``time``: Dataset with ``rain_rate`` (y, x) float32 mm/h and
        ``lightning`` (y, x) float32 flashes per cell per ``cadence``; scalar ``time``
        coordinate and CRS (``spatial_ref``)."""
        ts = dims.to_utc_timestamp(time)
        t = self._seconds(ts)
        g = self._gaussian_field(t)
        z = float(ndtri(1.0 - self.wet_fraction_at(ts)))
        bumps, active = self._render_cells(t)
        excess = g - z + bumps
        # log-normal intensities: _R_EDGE mm/h at the rain edge, x e per 1/_R_SLOPE std
        rain = np.where(excess > 0, _R_EDGE * np.exp(_R_SLOPE * np.minimum(excess, 8.0)), 0.0)
        np.minimum(rain, _R_MAX, out=rain)
        cell_km2 = abs(self._dx * self._dy) / 1e6
        flash_scale = self.flash_rate * (cell_km2 / 4.0) * (self.cadence / pd.Timedelta("5min"))
        lam = np.where(rain >= self.lightning_min_rain, flash_scale * active, 0.0)
        flashes = np.zeros(rain.shape, dtype=np.float32)
        hot = lam > 0
        if hot.any():
            rng = np.random.default_rng([self.seed, 3, int(math.floor(t)) + _SEED_OFFSET])
            flashes[hot] = rng.poisson(lam[hot])
        gridc = self.grid.coords()
        ds = xr.Dataset(
            {
                dims.RAIN_RATE: ((dims.Y, dims.X), rain.astype(dims.FLOAT), {"units": dims.RAIN_RATE_UNITS, "long_name": "synthetic rain rate"}),
                dims.LIGHTNING: ((dims.Y, dims.X), flashes, {"units": dims.LIGHTNING_UNITS, "long_name": "synthetic lightning flash count"}),
            },
            coords={dims.Y: gridc[dims.Y], dims.X: gridc[dims.X], dims.TIME: np.datetime64(ts.as_unit("ns").to_datetime64())},
            attrs={"source": "synthetic", "comment": "synthetic data, not observations", "seed": self.seed},
        )
        return dims.attach_crs(ds, self.grid.crs)  # type: ignore[return-value]

    def frames(self, times: object) -> xr.Dataset:
        """Several frames stacked along ``time``: Dataset (time, y, x)."""
        idx = dims.to_utc_index(times)
        return xr.concat([self.frame(t) for t in idx], dim=dims.TIME)

    def slot(self, time: object) -> pd.Timestamp:
        """The cadence-aligned slot at or before ``time`` (UTC, tz-naive)."""
        return dims.to_utc_timestamp(time).floor(self.cadence)


class SyntheticSource(SourceBase):
    """The synthetic radar as a live source: one frame per cadence slot, computed on fetch.

    Options: ``seed``, ``delay`` (seconds after the slot time before a frame is offered,
    mimicking a provider's latency) and any :class:`SyntheticRadar` keyword. Frames are made
    on ``grid`` (the store grid) so no regridding is needed.
    """

    kind = "radar"

    def __init__(
        self,
        name: str = "synthetic",
        *,
        grid: Grid | None = None,
        cadence: pd.Timedelta | str | None = None,
        store_cadence: pd.Timedelta | str = dims.DEFAULT_CADENCE,
        seed: int = 0,
        delay: float = 0.0,
        kind: str = "radar",
        **radar_options: object,
    ) -> None:
        if kind != "radar":
            raise ValueError(f"the synthetic source delivers radar frames (with lightning), not {kind!r}")
        cadence = cadence if cadence is not None else store_cadence
        self.name = name
        self.radar = SyntheticRadar(grid, seed=seed, cadence=cadence, **radar_options)  # type: ignore[arg-type]
        self.cadence = pd.Timedelta(cadence)
        self.delay = pd.Timedelta(seconds=float(delay))

    def poll(self, now: pd.Timestamp, since: pd.Timestamp, state: dict) -> list[Item]:
        return [Item(key=f"synthetic:{t.isoformat()}", time=t) for t in slots_between(since, now - self.delay, self.cadence)]

    def fetch(self, item: Item, state: dict) -> Fetched:
        if item.time is None:
            raise ValueError(f"synthetic item {item.key!r} has no time")
        return Fetched(item=item, dataset=self.radar.frame(item.time))
