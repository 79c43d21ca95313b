"""Contingency tables per (lead_time, threshold) and the categorical scores computed from them.

An *event* is ``value >= threshold`` (mm/h for rain). Forecast and observation may use
different thresholds (e.g. lightning: forecast probability >= 0.5 against observed
flashes >= 1); by default both use ``thresholds``. Cells where either field is NaN are
not counted at all.

Note: pysteps' ``det_cat_fct_accum`` uses ``value > threshold``; the two agree whenever no
value equals a threshold exactly (continuous data), which the tests check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from nowcast.metrics.base import METRICS, StateMixin, as_cases, safe_ratio

#: scores computed from a contingency table; True when higher is better
CATEGORICAL_SCORES: dict[str, bool] = {
    "csi": True,
    "pod": True,
    "far": False,
    "bias": True,  # best at 1; "higher is better" is only used for win counts, see dap.report
    "hss": True,
    "ets": True,
    "mcc": True,
}


def scores_from_counts(
    hits: Any, misses: Any, false_alarms: Any, correct_negatives: Any
) -> dict[str, np.ndarray]:
    """CSI, POD, FAR, BIAS, HSS, ETS, MCC from contingency counts (any matching shapes).

    Undefined scores (zero denominators, e.g. no observed and no forecast events) are NaN.
    Products are formed in float64 so large counts cannot overflow.
    """
    h = np.asarray(hits, dtype=np.float64)
    m = np.asarray(misses, dtype=np.float64)
    f = np.asarray(false_alarms, dtype=np.float64)
    r = np.asarray(correct_negatives, dtype=np.float64)
    n = h + m + f + r
    hits_random = safe_ratio((h + m) * (h + f), n)
    return {
        "csi": safe_ratio(h, h + m + f),
        "pod": safe_ratio(h, h + m),
        "far": safe_ratio(f, h + f),
        "bias": safe_ratio(h + f, h + m),
        "hss": safe_ratio(2.0 * (h * r - f * m), (h + m) * (m + r) + (h + f) * (f + r)),
        "ets": safe_ratio(h - hits_random, h + m + f - hits_random),
        "mcc": safe_ratio(h * r - f * m, np.sqrt((h + f) * (h + m) * (r + f) * (r + m))),
    }


@METRICS.register("categorical")
@dataclass(eq=False)
class ContingencyTable(StateMixin):
    """Counts (lead_time, threshold) int64 of hits, misses, false alarms, correct negatives."""

    thresholds: tuple[float, ...]
    forecast_thresholds: tuple[float, ...]
    hits: np.ndarray
    misses: np.ndarray
    false_alarms: np.ndarray
    correct_negatives: np.ndarray

    @classmethod
    def init(
        cls,
        thresholds: Sequence[float],
        n_leads: int,
        forecast_thresholds: Sequence[float] | None = None,
    ) -> Self:
        """Empty table for ``thresholds`` (observed) and ``n_leads`` lead times."""
        thr = tuple(float(t) for t in thresholds)
        fthr = thr if forecast_thresholds is None else tuple(float(t) for t in forecast_thresholds)
        if len(fthr) != len(thr):
            raise ValueError(f"{len(fthr)} forecast thresholds for {len(thr)} observed thresholds")
        shape = (int(n_leads), len(thr))
        z = lambda: np.zeros(shape, dtype=np.int64)  # noqa: E731
        return cls(thr, fthr, z(), z(), z(), z())

    @property
    def n_leads(self) -> int:
        return int(self.hits.shape[0])

    def accumulate(self, forecast: Any, observed: Any) -> None:
        """Add one forecast (lead_time, y, x) and its observations; NaN cells are skipped."""
        f, o, valid = as_cases(forecast, observed, self.n_leads)
        for i, (tf, to) in enumerate(zip(self.forecast_thresholds, self.thresholds, strict=True)):
            fb = (f >= tf) & valid
            ob = (o >= to) & valid
            h = np.count_nonzero(fb & ob, axis=1)
            fy = np.count_nonzero(fb, axis=1)
            oy = np.count_nonzero(ob, axis=1)
            nv = np.count_nonzero(valid, axis=1)
            self.hits[:, i] += h
            self.false_alarms[:, i] += fy - h
            self.misses[:, i] += oy - h
            self.correct_negatives[:, i] += nv - fy - oy + h

    def merge(self, other: Self) -> None:
        self._merge_arrays(other)

    def compute(self) -> dict[str, np.ndarray]:
        """Scores (lead_time, threshold) float64; see :func:`scores_from_counts`."""
        return scores_from_counts(self.hits, self.misses, self.false_alarms, self.correct_negatives)
