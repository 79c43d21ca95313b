"""Fractions skill score (Roberts and Lean 2008) as streaming sums per (lead, threshold, scale).

Event fields ``I = value >= threshold`` are smoothed by a square moving average of ``scale``
cells (zero padding outside the domain, as in pysteps). Cells where *either* field is NaN
are set to "no event" in *both* fields before smoothing and excluded from the sums, so
missing coverage affects forecast and observation identically and is never scored.
Without NaN the result equals ``pysteps.verification.spatialscores.fss``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from scipy.ndimage import uniform_filter

from nowcast.metrics.base import METRICS, StateMixin, safe_ratio


@METRICS.register("fss")
@dataclass(eq=False)
class FractionsSkillScore(StateMixin):
    """float64 sums (lead_time, threshold, scale) of S_f*S_o, S_f**2, S_o**2 over valid cells."""

    thresholds: tuple[float, ...]
    scales: tuple[int, ...]
    sum_fct_obs: np.ndarray
    sum_fct_sq: np.ndarray
    sum_obs_sq: np.ndarray

    @classmethod
    def init(cls, thresholds: Sequence[float], scales: Sequence[int], n_leads: int) -> Self:
        """Empty sums; ``scales`` are window sizes in grid cells (odd or even, >= 1)."""
        sc = tuple(int(s) for s in scales)
        if any(s < 1 for s in sc):
            raise ValueError(f"FSS scales must be >= 1 grid cell, got {sc}")
        shape = (int(n_leads), len(thresholds), len(sc))
        return cls(
            tuple(float(t) for t in thresholds),
            sc,
            np.zeros(shape),
            np.zeros(shape),
            np.zeros(shape),
        )

    @property
    def n_leads(self) -> int:
        return int(self.sum_fct_sq.shape[0])

    def accumulate(self, forecast: Any, observed: Any) -> None:
        """Add one forecast (lead_time, y, x) and its observations (same shape)."""
        f = np.asarray(getattr(forecast, "values", forecast), dtype=np.float64)
        o = np.asarray(getattr(observed, "values", observed), dtype=np.float64)
        if f.ndim == 2:
            f, o = f[None], o[None]
        if f.shape != o.shape or f.ndim != 3 or f.shape[0] != self.n_leads:
            raise ValueError(
                f"expected two arrays (lead_time={self.n_leads}, y, x), got {f.shape} and {o.shape}"
            )
        valid = np.isfinite(f) & np.isfinite(o)  # (lead, y, x)
        if not valid.any():
            return
        for i, thr in enumerate(self.thresholds):
            i_f = ((f >= thr) & valid).astype(np.float64)
            i_o = ((o >= thr) & valid).astype(np.float64)
            for j, scale in enumerate(self.scales):
                if scale > 1:  # moving average over (y, x) only, lead by lead
                    s_f = uniform_filter(i_f, size=(1, scale, scale), mode="constant", cval=0.0)
                    s_o = uniform_filter(i_o, size=(1, scale, scale), mode="constant", cval=0.0)
                else:
                    s_f, s_o = i_f, i_o
                s_f = np.where(valid, s_f, 0.0)
                s_o = np.where(valid, s_o, 0.0)
                self.sum_fct_obs[:, i, j] += np.sum(s_f * s_o, axis=(1, 2))
                self.sum_fct_sq[:, i, j] += np.sum(s_f * s_f, axis=(1, 2))
                self.sum_obs_sq[:, i, j] += np.sum(s_o * s_o, axis=(1, 2))

    def merge(self, other: Self) -> None:
        self._merge_arrays(other)

    def compute(self) -> dict[str, np.ndarray]:
        """``fss`` (lead_time, threshold, scale) float64; NaN when neither field has events."""
        num = self.sum_fct_sq - 2.0 * self.sum_fct_obs + self.sum_obs_sq
        den = self.sum_fct_sq + self.sum_obs_sq
        return {"fss": 1.0 - safe_ratio(num, den)}
