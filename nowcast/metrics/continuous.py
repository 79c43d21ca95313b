"""Continuous errors (mean error, MAE, RMSE) as streaming sums per lead time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from nowcast.metrics.base import METRICS, StateMixin, as_cases, safe_ratio

#: True when higher is better
CONTINUOUS_SCORES: dict[str, bool] = {"mae": False, "rmse": False, "me": False}


@METRICS.register("continuous")
@dataclass(eq=False)
class ErrorSums(StateMixin):
    """Per lead time: count (int64) and float64 sums of e, |e|, e**2 with e = forecast - observed."""

    n: np.ndarray
    sum_err: np.ndarray
    sum_abs: np.ndarray
    sum_sq: np.ndarray

    @classmethod
    def init(cls, n_leads: int) -> Self:
        z = lambda: np.zeros(int(n_leads), dtype=np.float64)  # noqa: E731
        return cls(np.zeros(int(n_leads), dtype=np.int64), z(), z(), z())

    def accumulate(self, forecast: Any, observed: Any) -> None:
        """Add one forecast (lead_time, y, x) in mm/h and its observations; NaN masked."""
        f, o, valid = as_cases(forecast, observed, self.n.shape[0])
        e = np.where(valid, f - o, 0.0)
        self.n += np.count_nonzero(valid, axis=1)
        self.sum_err += e.sum(axis=1)
        self.sum_abs += np.abs(e).sum(axis=1)
        self.sum_sq += (e * e).sum(axis=1)

    def merge(self, other: Self) -> None:
        self._merge_arrays(other)

    def compute(self) -> dict[str, np.ndarray]:
        """``me``, ``mae``, ``rmse`` (lead_time,) float64 in the input unit; NaN with no cases."""
        return {
            "me": safe_ratio(self.sum_err, self.n),
            "mae": safe_ratio(self.sum_abs, self.n),
            "rmse": np.sqrt(safe_ratio(self.sum_sq, self.n)),
        }
