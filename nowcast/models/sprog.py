"""S-PROG (Seed 2003) through pysteps: a cascade decomposition of the dB-transformed field whose
scales are extrapolated and smoothed by scale-dependent AR(2) processes.

Defaults: Lucas-Kanade motion on the last 3 frames, 6 cascade levels, AR order 2, rain/no-rain
threshold 0.1 mm/h, dB transform with the dry value at -15 dBR, CDF probability matching.
Falls back to plain extrapolation (logged) where S-PROG cannot run: an input frame without
spatial variance (e.g. a constant field) or a pysteps failure. No rain -> dry forecast.
Lightning probability and the NaN rules as in :mod:`nowcast.models.motion`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.models import motion
from nowcast.models.base import forecast_dataset

log = logging.getLogger(__name__)


class SProg:
    """S-PROG nowcaster (registry name ``sprog``)."""

    name = "sprog"

    def __init__(
        self,
        n_cascade_levels: int = 6,
        ar_order: int = 2,
        n_inputs: int | None = None,
        oflow: str = "LK",
        rain_threshold: float = 0.1,
        dry_dbr: float = -15.0,
        probmatching_method: str | None = "cdf",
        lightning_radius: int = 2,
        lightning_sigma0: float = 1.0,
        lightning_growth: float = 0.5,
    ) -> None:
        if n_cascade_levels < 1 or ar_order < 1:
            raise ValueError(f"sprog: n_cascade_levels and ar_order must be >= 1, got {n_cascade_levels}, {ar_order}")
        if rain_threshold <= 0:
            raise ValueError(f"sprog: rain_threshold must be > 0 mm/h, got {rain_threshold}")
        self.n_cascade_levels = int(n_cascade_levels)
        self.ar_order = int(ar_order)
        self.n_inputs = max(int(n_inputs or 0), self.ar_order + 1, 2)
        self.oflow = oflow
        self.rain_threshold = float(rain_threshold)
        self.dry_dbr = float(dry_dbr)
        self.probmatching_method = probmatching_method
        self.lightning = {"lightning_radius": int(lightning_radius), "lightning_sigma0": float(lightning_sigma0), "lightning_growth": float(lightning_growth)}

    @property
    def version(self) -> str:
        return f"{self.oflow}-c{self.n_cascade_levels}-ar{self.ar_order}"

    def forecast(self, history: xr.Dataset, leads: Sequence[pd.Timedelta] = dims.DEFAULT_LEADS) -> xr.Dataset:
        """S-PROG nowcast from the last ``n_inputs`` frames of ``history`` (time, y, x)."""
        rain, light = motion.history_arrays(history, self.n_inputs, self.name)
        steps = motion.lead_steps(leads, motion.cadence_of(history))
        ext, prob, velocity = motion.extrapolation_nowcast(rain, light, steps, oflow=self.oflow, **self.lightning)
        fc = self._sprog(rain, velocity, steps, fallback=ext)
        fc, prob = motion.mask_outputs(fc, prob, rain[-1], light[-1])
        return forecast_dataset(fc, prob, history, leads, self.name, self.version)

    def _sprog(self, rain: np.ndarray, velocity: np.ndarray, steps: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        return sprog_rain(
            rain, velocity, steps, fallback,
            n_cascade_levels=self.n_cascade_levels, ar_order=self.ar_order, rain_threshold=self.rain_threshold,
            dry_dbr=self.dry_dbr, probmatching_method=self.probmatching_method,
        )


def to_dbr(rain: np.ndarray, rain_threshold: float = 0.1, dry_dbr: float = -15.0) -> np.ndarray:
    """Rain rate (mm/h, NaN = 0) -> dBR float64; below ``rain_threshold`` -> ``dry_dbr``."""
    r = motion.fill(rain)
    with np.errstate(divide="ignore"):
        dbr = 10.0 * np.log10(r)
    return np.where(r >= rain_threshold, dbr, dry_dbr).astype(np.float64)


def sprog_rain(
    rain: np.ndarray,
    velocity: np.ndarray,
    steps: np.ndarray,
    fallback: np.ndarray,
    n_cascade_levels: int = 6,
    ar_order: int = 2,
    rain_threshold: float = 0.1,
    dry_dbr: float = -15.0,
    probmatching_method: str | None = "cdf",
) -> np.ndarray:
    """The S-PROG rain nowcast (len(steps), y, x) mm/h float32 from the history ``rain`` (N, y, x)
    mm/h (the last ``ar_order + 1`` frames are used) and ``velocity`` (2, y, x) cells/step.

    ``steps``: lead times in history steps. Returns ``fallback`` (logged) where S-PROG cannot run:
    an input frame without spatial variance or a pysteps failure. Shared by the ``sprog``
    nowcaster and the ConvLSTM's S-PROG guide channel. A history without rain (at
    ``rain_threshold``) gives a dry nowcast.
    """
    if not motion.has_rain(rain, rain_threshold):
        return np.zeros_like(fallback)
    dbr = to_dbr(rain[-(ar_order + 1):], rain_threshold, dry_dbr)
    if any(np.ptp(f) == 0 for f in dbr):
        log.info("sprog: an input frame has no spatial variance; using extrapolation")
        return fallback
    from pysteps.nowcasts import sprog

    integral = np.allclose(steps, np.rint(steps))
    # whole steps: run to the last one and pick, so any subset of leads matches the full run
    ts = int(np.rint(steps.max())) if integral else [float(s) for s in steps]

    try:
        with motion.quiet_pysteps():
            out = sprog.forecast(
                dbr,
                velocity.astype(np.float64),
                ts,
                precip_thr=10.0 * np.log10(rain_threshold),
                n_cascade_levels=n_cascade_levels,
                ar_order=ar_order,
                probmatching_method=probmatching_method,
                extrap_kwargs={"allow_nonfinite_values": True},
            )
    except Exception as exc:
        log.warning("sprog failed (%s: %s); using extrapolation", type(exc).__name__, exc)
        return fallback
    out = np.asarray(out, dtype=np.float64)
    if integral:
        out = out[np.rint(steps).astype(int) - 1]
    rate = np.where(np.isfinite(out), 10.0 ** (out / 10.0), 0.0)
    rate[rate < rain_threshold] = 0.0
    return rate.astype(dims.FLOAT)
