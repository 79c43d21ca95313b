"""Shared pieces of the optical-flow baselines: input preparation, motion, advection, lightning.

Used by the ``persistence``, ``extrapolation`` and ``sprog`` nowcasters and by the ConvLSTM
adapter (which feeds the extrapolation nowcast to its network). Arrays here are plain numpy
(``(time, y, x)`` or ``(y, x)``, float32); xarray stays at the nowcaster boundary.

Conventions (documented once, used by every baseline):

- **NaN input** (no radar coverage, or a missing frame) is filled with 0 mm/h (dry) for the
  motion estimate and the advection; values advected in from outside the domain are 0.
- **Output coverage**: the forecast is NaN wherever the *last* input frame is NaN (the radar
  coverage at init time); lightning probability is also NaN where the last lightning field is
  NaN (no lightning feed there).
- **No rain**: when the input frames hold (almost) no rain the motion field is zero (pysteps'
  Lucas-Kanade finds no features to track) and the forecast is dry.
- **Lightning probability** baseline: the lightning occurrence field (count > 0) of the last
  frame is dilated by a neighbourhood of ``radius`` cells, moved like the rain (advected or
  persisted), and smoothed by a Gaussian whose width grows with lead time
  (``sigma0 + growth * step`` cells); values are in [0, 1]. A simple, documented reference,
  not a calibrated probability.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from nowcast import dims
from nowcast.transforms import rainrate_to_scaled

log = logging.getLogger(__name__)

#: rain rate (mm/h) above which a cell counts as wet for the motion / no-rain checks
WET_THRESHOLD = 0.1
#: below this fraction of wet (covered) cells in every input frame, the input is "no rain"
MIN_WET_FRACTION = 1e-4


class ForecastInputError(ValueError):
    """A history window or lead list that a nowcaster cannot use; the message says why."""


def history_arrays(history: xr.Dataset, n: int, model: str) -> tuple[np.ndarray, np.ndarray]:
    """The last ``n`` frames of ``history`` as float32 arrays.

    Returns ``(rain, lightning)``, each ``(n, y, x)`` float32 (rain mm/h, lightning counts);
    NaN kept. A history without a ``lightning`` variable gives an all-NaN lightning array.
    Raises :class:`ForecastInputError` when the history is shorter than ``n`` or has bad dims.
    """
    if dims.RAIN_RATE not in history:
        raise ForecastInputError(f"{model}: history has no {dims.RAIN_RATE!r} variable")
    rr = history[dims.RAIN_RATE]
    if tuple(rr.dims) != dims.FRAME_DIMS:
        raise ForecastInputError(f"{model}: history dims must be {dims.FRAME_DIMS}, got {rr.dims}")
    if rr.sizes[dims.TIME] < n:
        raise ForecastInputError(f"{model}: needs {n} input frames, history has {rr.sizes[dims.TIME]}")
    rain = np.asarray(rr.values[-n:], dtype=dims.FLOAT)
    if dims.LIGHTNING in history:
        light = np.asarray(history[dims.LIGHTNING].transpose(*dims.FRAME_DIMS).values[-n:], dtype=dims.FLOAT)
    else:
        light = np.full_like(rain, np.nan)
    return rain, light


def cadence_of(history: xr.Dataset, default: pd.Timedelta = dims.DEFAULT_CADENCE) -> pd.Timedelta:
    """Time step of ``history`` (median spacing); ``default`` for a single frame."""
    t = pd.DatetimeIndex(history[dims.TIME].values)
    if len(t) < 2:
        return default
    step = pd.Timedelta(np.median(np.diff(t.values)))
    if step <= pd.Timedelta(0):
        raise ForecastInputError(f"history times must increase, got spacing {step}")
    return step


def lead_steps(leads: Sequence[pd.Timedelta], cadence: pd.Timedelta) -> np.ndarray:
    """Leads as (float) multiples of ``cadence``; must be positive and strictly increasing."""
    td = pd.to_timedelta(list(leads))
    if len(td) == 0:
        raise ForecastInputError("no lead times requested")
    steps = np.asarray(td / cadence, dtype=np.float64)
    if np.any(steps <= 0) or np.any(np.diff(steps) <= 0):
        raise ForecastInputError(f"lead times must be positive and increasing, got {list(td)}")
    return steps


def fill(a: np.ndarray, value: float = 0.0) -> np.ndarray:
    """Copy of ``a`` (float32) with NaN/inf replaced by ``value``."""
    out = np.array(a, dtype=dims.FLOAT, copy=True)
    out[~np.isfinite(out)] = value
    return out


def has_rain(rain: np.ndarray, threshold: float = WET_THRESHOLD, min_fraction: float = MIN_WET_FRACTION) -> bool:
    """True when the most recent frame of ``rain`` (time, y, x) mm/h has enough wet cells."""
    last = rain[-1]
    finite = np.isfinite(last)
    if not finite.any():
        return False
    wet = np.count_nonzero(last[finite] >= threshold)
    return wet > 0 and wet / finite.sum() >= min_fraction


@contextlib.contextmanager
def quiet_pysteps():
    """Route pysteps' prints to the debug log instead of stdout."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    text = buf.getvalue().strip()
    if text:
        log.debug("pysteps: %s", text)


def estimate_motion(
    rain: np.ndarray,
    method: str = "LK",
    threshold: float = WET_THRESHOLD,
    **kwargs: object,
) -> np.ndarray:
    """Motion field from consecutive frames with a pysteps optical-flow method.

    Parameters
    ----------
    rain: (time >= 2, y, x) float rain rate mm/h, NaN = no coverage (filled with 0).
    method: a ``pysteps.motion.get_method`` name ("LK", "DARTS", "VET", "proesmans").

    Returns (2, y, x) float32 velocity (x then y component) in cells per frame step. A zero
    field when fewer than two frames hold rain (nothing to track).
    """
    if rain.ndim != 3 or rain.shape[0] < 2:
        raise ForecastInputError(f"motion needs >= 2 frames (time, y, x), got shape {rain.shape}")
    ny, nx = rain.shape[1:]
    zero = np.zeros((2, ny, nx), dtype=dims.FLOAT)
    wet_frames = [f for f in rain if np.count_nonzero(np.nan_to_num(f) >= threshold) >= 4]
    if len(wet_frames) < 2:
        return zero
    # log scale: a reflectivity-like field tracks better than mm/h; dry -> 0
    scaled = rainrate_to_scaled(fill(rain)).astype(np.float64)
    from pysteps import motion

    try:
        with quiet_pysteps():
            v = motion.get_method(method)(scaled, **kwargs)
    except Exception as exc:  # degenerate fields (e.g. a few isolated cells) trip pysteps
        log.warning("optical flow %s failed (%s: %s); using zero motion", method, type(exc).__name__, exc)
        return zero
    v = np.asarray(v, dtype=dims.FLOAT)
    v[~np.isfinite(v)] = 0.0
    return v


def trajectory(velocity: np.ndarray, n_steps: int) -> np.ndarray:
    """Backward displacements of pysteps' semi-Lagrangian scheme for steps 1..``n_steps``.

    velocity: (2, y, x) cells/step (x then y). Returns (n_steps, 2, y, x) float64: the same
    displacements ``pysteps.extrapolation.semilagrangian.extrapolate`` integrates (midpoint
    rule, one iteration, linear interpolation of the motion), so :func:`warp` along it equals
    that extrapolation exactly. Computing it once lets several fields (the last frame, S-PROG's
    cascade recomposition, lightning) share one trajectory instead of re-integrating it each.
    """
    from scipy.ndimage import map_coordinates

    v = velocity.astype(np.float64)
    ny, nx = v.shape[1:]
    xy = np.stack(np.meshgrid(np.arange(nx), np.arange(ny)))

    def motion_at(displacement: np.ndarray) -> np.ndarray:
        warped = xy + displacement
        coords = [warped[1], warped[0]]
        return np.stack([map_coordinates(v[c], coords, mode="nearest", order=1, prefilter=False) for c in (0, 1)])

    out = np.empty((int(n_steps), 2, ny, nx))
    displacement = np.zeros((2, ny, nx))
    increment = v.copy()
    for k in range(int(n_steps)):
        increment = motion_at(displacement - increment / 2.0)
        displacement -= increment
        increment = motion_at(displacement)
        out[k] = displacement
    return out


def warp(field: np.ndarray, displacement: np.ndarray, outval: float = 0.0) -> np.ndarray:
    """``field`` (y, x) float64 moved by one ``displacement`` (2, y, x) of :func:`trajectory`
    (bilinear, ``outval`` from outside the domain), as pysteps' semi-Lagrangian step does it."""
    from scipy.ndimage import map_coordinates

    ny, nx = field.shape
    coords = [np.arange(ny)[:, None] + displacement[1], np.arange(nx)[None, :] + displacement[0]]
    return map_coordinates(field, coords, mode="constant", cval=outval, order=1, prefilter=False)


def advect(
    field: np.ndarray, velocity: np.ndarray, steps: np.ndarray, outval: float = 0.0, path: np.ndarray | None = None
) -> np.ndarray:
    """Semi-Lagrangian (backward) advection of ``field`` (y, x) by ``velocity`` (2, y, x).

    ``steps``: increasing positive multiples of the velocity's time step. Non-finite input
    cells are treated as 0; cells advected in from outside the domain get ``outval``.
    ``path``: the :func:`trajectory` of ``velocity`` when already computed (whole steps only;
    the result is the same, without re-integrating the motion). Returns (len(steps), y, x) float32.
    """
    from pysteps.extrapolation import semilagrangian

    f = fill(field).astype(np.float64)
    if not np.any(f) or not np.any(velocity):
        return np.repeat(f[None].astype(dims.FLOAT), len(steps), axis=0)
    steps = np.asarray(steps, dtype=np.float64)
    integral = np.allclose(steps, np.rint(steps))
    if integral and path is not None and len(path) >= int(np.rint(steps.max())):
        out = np.stack([warp(f, path[int(k) - 1], outval) for k in np.rint(steps)]).astype(dims.FLOAT)
    else:
        # whole steps: integrate step by step and pick, so any subset of leads matches the full run
        ts = int(np.rint(steps.max())) if integral else list(map(float, steps))
        with quiet_pysteps():
            out = semilagrangian.extrapolate(f, velocity.astype(np.float64), ts, outval=outval)
        out = np.asarray(out, dtype=dims.FLOAT)
        if integral:
            out = out[np.rint(steps).astype(int) - 1]
    out[~np.isfinite(out)] = outval
    return out


def lightning_occurrence(lightning: np.ndarray, radius: int = 2) -> np.ndarray:
    """Occurrence (count > 0) of a lightning field (y, x), dilated by ``radius`` cells, float32 0/1."""
    occ = (np.nan_to_num(lightning, nan=0.0) > 0).astype(dims.FLOAT)
    if radius > 0 and occ.any():
        occ = ndimage.maximum_filter(occ, size=2 * radius + 1, mode="constant")
    return occ


def smooth_probability(fields: np.ndarray, steps: np.ndarray, sigma0: float = 1.0, growth: float = 0.5) -> np.ndarray:
    """Gaussian smoothing of (lead, y, x) occurrence fields with width ``sigma0 + growth*step``."""
    out = np.empty_like(fields, dtype=dims.FLOAT)
    for i, (f, s) in enumerate(zip(fields, steps, strict=True)):
        sigma = sigma0 + growth * float(s)
        out[i] = ndimage.gaussian_filter(f, sigma=sigma, mode="constant") if f.any() and sigma > 0 else f
    return np.clip(out, 0.0, 1.0)


def mask_outputs(
    rain: np.ndarray, prob: np.ndarray, last_rain: np.ndarray, last_lightning: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the coverage rule: NaN where the last rain frame is NaN (both outputs) and where
    the last lightning field is NaN (probability). Rain is clipped at 0. Returns float32 arrays."""
    no_cov = ~np.isfinite(last_rain)
    rain = np.where(no_cov[None], np.nan, np.maximum(rain, 0.0)).astype(dims.FLOAT)
    no_light = no_cov | ~np.isfinite(last_lightning)
    prob = np.where(no_light[None], np.nan, prob).astype(dims.FLOAT)
    return rain, prob


def extrapolation_nowcast(
    rain: np.ndarray,
    lightning: np.ndarray,
    steps: np.ndarray,
    *,
    oflow: str = "LK",
    oflow_kwargs: dict | None = None,
    lightning_radius: int = 2,
    lightning_sigma0: float = 1.0,
    lightning_growth: float = 0.5,
    share_trajectory: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Advect the last frame by the motion of ``rain`` (time, y, x) mm/h.

    Returns ``(rain_forecast, lightning_probability, velocity, path)``: (lead, y, x) float32 mm/h
    (NaN-free, coverage not yet applied), (lead, y, x) float32 in [0, 1], (2, y, x) float32, and
    with ``share_trajectory`` the :func:`trajectory` both fields were moved along (for further
    fields, e.g. S-PROG's; the same result as integrating each), else None.
    """
    ny, nx = rain.shape[1:]
    if has_rain(rain) or np.any(np.nan_to_num(lightning[-1]) > 0):
        velocity = estimate_motion(rain, oflow, **(oflow_kwargs or {}))
    else:
        velocity = np.zeros((2, ny, nx), dtype=dims.FLOAT)
    path = None
    if share_trajectory and np.any(velocity) and np.allclose(steps, np.rint(steps)):
        path = trajectory(velocity, int(np.rint(np.max(steps))))
    if has_rain(rain):
        fc = advect(rain[-1], velocity, steps, path=path)
        fc[fc < 0] = 0.0
    else:
        fc = np.zeros((len(steps), ny, nx), dtype=dims.FLOAT)
    occ = lightning_occurrence(lightning[-1], lightning_radius)
    occ_fc = advect(occ, velocity, steps, path=path)
    prob = smooth_probability(occ_fc, steps, lightning_sigma0, lightning_growth)
    return fc, prob, velocity, path
