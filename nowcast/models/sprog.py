"""S-PROG (Seed 2003) through pysteps: a cascade decomposition of the dB-transformed field whose
scales are extrapolated and smoothed by scale-dependent AR(2) processes.

Defaults: Lucas-Kanade motion on the last 3 frames, 6 cascade levels, AR order 2, rain/no-rain
threshold 0.1 mm/h, dB transform with the dry value at -15 dBR, CDF probability matching.
Falls back to plain extrapolation (logged) where S-PROG cannot run: an input frame without
spatial variance (e.g. a constant field) or a pysteps failure. No rain -> dry forecast.
Lightning probability and the NaN rules as in :mod:`nowcast.models.motion`.

By default the nowcaster calls pysteps' ``sprog.forecast`` itself (the reference). With
``share_trajectory=True`` the motion is integrated once and the extrapolation, lightning and
S-PROG fields move along it (:func:`sprog_along`): the same numbers, less time. The ConvLSTM's
S-PROG guide always shares its trajectory.
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
        share_trajectory: bool = False,
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
        self.share_trajectory = bool(share_trajectory)
        self.lightning = {"lightning_radius": int(lightning_radius), "lightning_sigma0": float(lightning_sigma0), "lightning_growth": float(lightning_growth)}

    @property
    def version(self) -> str:
        return f"{self.oflow}-c{self.n_cascade_levels}-ar{self.ar_order}"

    def forecast(self, history: xr.Dataset, leads: Sequence[pd.Timedelta] = dims.DEFAULT_LEADS) -> xr.Dataset:
        """S-PROG nowcast from the last ``n_inputs`` frames of ``history`` (time, y, x)."""
        rain, light = motion.history_arrays(history, self.n_inputs, self.name)
        steps = motion.lead_steps(leads, motion.cadence_of(history))
        ext, prob, velocity, path = motion.extrapolation_nowcast(
            rain, light, steps, oflow=self.oflow, share_trajectory=self.share_trajectory, **self.lightning
        )
        fc = self._sprog(rain, velocity, steps, fallback=ext, path=path)
        fc, prob = motion.mask_outputs(fc, prob, rain[-1], light[-1])
        return forecast_dataset(fc, prob, history, leads, self.name, self.version)

    def _sprog(self, rain: np.ndarray, velocity: np.ndarray, steps: np.ndarray, fallback: np.ndarray, path: np.ndarray | None = None) -> np.ndarray:
        return sprog_rain(
            rain, velocity, steps, fallback, path=path,
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
    path: np.ndarray | None = None,
) -> np.ndarray:
    """The S-PROG rain nowcast (len(steps), y, x) mm/h float32 from the history ``rain`` (N, y, x)
    mm/h (the last ``ar_order + 1`` frames are used) and ``velocity`` (2, y, x) cells/step.

    ``steps``: lead times in history steps. Returns ``fallback`` (logged) where S-PROG cannot run:
    an input frame without spatial variance or a pysteps failure. Shared by the ``sprog``
    nowcaster and the ConvLSTM's S-PROG guide channel. A history without rain (at
    ``rain_threshold``) gives a dry nowcast.

    ``path``: the :func:`~nowcast.models.motion.trajectory` of ``velocity`` when the caller has
    it (whole steps): then :func:`sprog_along` runs the same algorithm on that trajectory instead
    of pysteps' ``sprog.forecast`` re-integrating the motion at every step (equal to it; tested).
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
        if integral and path is not None and len(path) >= ts:
            out = sprog_along(dbr, path[:ts], 10.0 * np.log10(rain_threshold), n_cascade_levels, ar_order, probmatching_method)
        else:
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


def sprog_along(
    dbr: np.ndarray,
    path: np.ndarray,
    precip_thr: float,
    n_cascade_levels: int = 6,
    ar_order: int = 2,
    probmatching_method: str | None = "cdf",
) -> np.ndarray:
    """pysteps' deterministic S-PROG (``sprog.forecast`` with its defaults: Gaussian band-pass
    FFT cascade, spatial domain, unconditional AR(``ar_order``), semi-Lagrangian extrapolation)
    run along a precomputed trajectory.

    dbr: (>= ar_order + 1, y, x) float64 dBR, finite. path: (K, 2, y, x) displacements of
    :func:`~nowcast.models.motion.trajectory`. Returns (K, y, x) float64 dBR (NaN where moved in
    from outside the domain), equal to ``sprog.forecast(dbr, velocity, K, ...)``: the same
    steps in the same order, only the motion integration is shared and the observed field is
    sorted once for the CDF matching. Raises what the pysteps pieces raise.
    """
    from pysteps import cascade
    from pysteps.nowcasts.utils import compute_percentile_mask, stack_cascades
    from pysteps.timeseries import autoregression, correlation

    precip = np.array(dbr[-(ar_order + 1):], dtype=np.float64)
    n_steps, (ny, nx) = len(path), precip.shape[1:]
    bp_filter = cascade.get_method("gaussian")((ny, nx), n_cascade_levels)
    decompose, recompose = cascade.get_method("fft")
    precip_min = np.nanmin(precip)
    domain_mask = np.logical_or.reduce([~np.isfinite(f) for f in precip])
    if not np.any(precip >= precip_thr):  # pysteps' check_norain with norain_thr = 0
        return np.full((n_steps, ny, nx), np.nanmin(precip))
    # the older inputs moved to the time of the last one (outside the domain: their minimum)
    for i in range(ar_order):
        precip[i] = motion.warp(precip[i], path[ar_order - i - 1], np.nanmin(precip[i]))
    for f in precip:
        f[~np.isfinite(f)] = np.nanmin(f)
    decomps = [
        decompose(f, bp_filter, mask=None, fft_method="numpy", output_domain="spatial", normalize=True, compute_stats=True, compact_output=True)
        for f in precip
    ]
    full = stack_cascades(decomps, n_cascade_levels, convert_to_full_arrays=True)
    gamma = np.stack([correlation.temporal_autocorrelation(full[i], mask=None) for i in range(n_cascade_levels)])
    if ar_order == 2:
        for i in range(n_cascade_levels):
            gamma[i, 1] = autoregression.adjust_lag2_corrcoef2(gamma[i, 0], gamma[i, 1])
    phi = np.stack([autoregression.estimate_ar_params_yw(gamma[i]) for i in range(n_cascade_levels)])
    cascades = [c[-ar_order:] for c in stack_cascades(decomps, n_cascade_levels, convert_to_full_arrays=False)]
    decomp = decomps[-1]
    last = precip[-1]
    war = np.sum(last >= precip_thr) / last.size
    mu_0 = np.mean(last[last >= precip_thr]) if probmatching_method == "mean" else None
    matcher = _CdfMatcher(last) if probmatching_method == "cdf" else None
    out = np.empty((n_steps, ny, nx))
    for k in range(n_steps):
        cascades = [autoregression.iterate_ar_model(cascades[i], phi[i]) for i in range(n_cascade_levels)]
        decomp["cascade_levels"] = np.stack([c[-1] for c in cascades])
        field = recompose(decomp)
        mask = compute_percentile_mask(field, war)
        field[~mask] = precip_min
        if matcher is not None:
            field = matcher(field)
        elif probmatching_method == "mean":
            field[mask] = field[mask] - np.mean(field[mask]) + mu_0
        field[domain_mask] = np.nan
        out[k] = motion.warp(field, path[k], np.nan)
    return out


class _CdfMatcher:
    """pysteps' ``nonparam_match_empirical_cdf(field, target)`` for one fixed target, with the
    target sorted once (its wet-fraction adjustment applied to the sorted values)."""

    def __init__(self, target: np.ndarray) -> None:
        t = np.array(target, dtype=float).reshape(-1)
        self.zero = np.nanmin(t)
        t = np.where(np.isnan(t), self.zero, t)
        self.ranked = np.sort(t)
        self.n_wet = int(np.sum(t > self.zero))

    def __call__(self, field: np.ndarray) -> np.ndarray:
        f = np.array(field, dtype=float)
        zvalue = np.nanmin(f)
        if np.any(~np.isfinite(f)):
            raise ValueError("Initial array contains non-finite values outside ignore_indices mask.")
        idxzeros = f == zvalue
        ranked = self.ranked
        n_wet_f = int(np.sum(f > zvalue))
        if self.n_wet > n_wet_f:
            p = np.percentile(ranked, 100 * (1 - n_wet_f / f.size))
            ranked = np.where(ranked < p, self.zero, ranked)
        flat = f.reshape(-1)
        ranks = np.empty(flat.size, int)
        ranks[flat.argsort()] = np.arange(flat.size)
        out = ranked[ranks].reshape(f.shape)
        out[idxzeros] = self.zero
        return out
