"""Brier score and reliability diagram for probability forecasts of a binary event.

The forecast is a probability (0..1), the observation a quantity turned into an event by
``value >= occurrence`` (e.g. lightning flashes per cell per interval >= 1). NaN in either
is masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from nowcast.metrics.base import METRICS, StateMixin, as_cases, safe_ratio


@METRICS.register("reliability")
@dataclass(eq=False)
class BrierReliability(StateMixin):
    """Per lead time: Brier sums and reliability bins (lead_time, bin) over [0, 1].

    ``count`` int64 cases per bin, ``sum_prob`` float64 sum of forecast probabilities per
    bin, ``sum_obs`` int64 observed events per bin; ``sum_sq`` float64 sum of (p - o)**2.
    """

    occurrence: float
    n_bins: int
    count: np.ndarray
    sum_prob: np.ndarray
    sum_obs: np.ndarray
    sum_sq: np.ndarray

    @classmethod
    def init(cls, n_leads: int, occurrence: float = 1.0, n_bins: int = 10) -> Self:
        shape = (int(n_leads), int(n_bins))
        return cls(
            float(occurrence),
            int(n_bins),
            np.zeros(shape, dtype=np.int64),
            np.zeros(shape, dtype=np.float64),
            np.zeros(shape, dtype=np.int64),
            np.zeros(int(n_leads), dtype=np.float64),
        )

    def accumulate(self, forecast: Any, observed: Any) -> None:
        """Add probabilities (lead_time, y, x) in 0..1 and observed quantities (same shape)."""
        p, o, valid = as_cases(forecast, observed, self.count.shape[0])
        if np.any(p[valid] < 0) or np.any(p[valid] > 1):
            raise ValueError("probability forecast outside [0, 1]")
        event = (o >= self.occurrence).astype(np.float64)
        # bin i holds p in [i/n, (i+1)/n); p == 1 goes into the last bin
        b = np.clip(np.floor(np.nan_to_num(p) * self.n_bins).astype(np.int64), 0, self.n_bins - 1)
        for k in range(self.count.shape[0]):
            v = valid[k]
            bk = b[k][v]
            self.count[k] += np.bincount(bk, minlength=self.n_bins)
            self.sum_prob[k] += np.bincount(bk, weights=p[k][v], minlength=self.n_bins)
            self.sum_obs[k] += np.bincount(bk, weights=event[k][v], minlength=self.n_bins).astype(
                np.int64
            )
            d = p[k][v] - event[k][v]
            self.sum_sq[k] += np.sum(d * d)

    def merge(self, other: Self) -> None:
        self._merge_arrays(other)

    def compute(self) -> dict[str, np.ndarray]:
        """``brier``, ``bss`` (vs the sample climatology), ``base_rate`` (lead_time,) and
        ``reliability_forecast`` / ``reliability_observed`` / ``reliability_count`` (lead_time, bin)."""
        n = self.count.sum(axis=1)
        events = self.sum_obs.sum(axis=1)
        brier = safe_ratio(self.sum_sq, n)
        base = safe_ratio(events, n)
        ref = base * (1.0 - base)
        return {
            "brier": brier,
            "bss": 1.0 - safe_ratio(brier, ref),
            "base_rate": base,
            "reliability_forecast": safe_ratio(self.sum_prob, self.count),
            "reliability_observed": safe_ratio(self.sum_obs, self.count),
            "reliability_count": self.count.astype(np.float64),
        }
