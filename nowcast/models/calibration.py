"""Threshold calibration of exceedance probabilities into a deterministic rain field.

A network with exceedance heads gives, per lead ``k`` and threshold ``t_j`` (mm/h), the
probability ``P_kj = P(rain >= t_j)``. A deterministic forecast that must score well at those
thresholds (CSI, MCC) should say "rain >= t_j" where ``P_kj >= p*_kj``; the CSI-optimal cut
``p*`` is usually well below 0.5 and grows less sharp with lead. The cuts are chosen on
validation data only (:class:`ExceedanceHistogram`, streaming and exactly mergeable), stored in
the checkpoint, and applied by :func:`apply_threshold_calibration`.

Shapes: probabilities (K, T, y, x) float in [0, 1]; rates and observations (K, y, x) mm/h,
NaN = unknown (masked, never counted as dry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: probability bins of the histogram: edges (b / N_BINS)**2, b = 0..N_BINS, fine near 0 where
#: the CSI-optimal cuts of rare exceedances (5, 10 mm/h at long leads) lie (first edge 1e-4)
N_BINS = 100
#: the lowest probability cut considered (CSI of rarer cuts is dominated by false alarms)
MIN_CUT = 1e-3


def prob_bin(prob: np.ndarray) -> np.ndarray:
    """Bin index of probabilities (quadratic edges, see :data:`N_BINS`)."""
    return np.clip((np.sqrt(np.clip(prob, 0.0, 1.0)) * N_BINS).astype(np.int64), 0, N_BINS - 1)


def first_bin(min_cut: float = MIN_CUT) -> int:
    """The lowest bin whose lower edge is a cut of at least ``min_cut``."""
    return int(np.ceil(np.sqrt(min_cut) * N_BINS))


def bin_edge(b: np.ndarray | int) -> np.ndarray:
    """Lower probability edge of bin ``b``."""
    return (np.asarray(b, dtype=np.float64) / N_BINS) ** 2


@dataclass
class ExceedanceHistogram:
    """Counts of observed exceedances / non-exceedances per (lead, threshold, probability bin)."""

    thresholds: tuple[float, ...]
    n_leads: int
    positive: np.ndarray = field(default=None)  # type: ignore[assignment]  # (K, T, N_BINS) int64
    negative: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        shape = (self.n_leads, len(self.thresholds), N_BINS)
        if self.positive is None:
            self.positive = np.zeros(shape, dtype=np.int64)
        if self.negative is None:
            self.negative = np.zeros(shape, dtype=np.int64)

    def accumulate(self, prob: np.ndarray, observed: np.ndarray, mask: np.ndarray | None = None) -> None:
        """prob: (..., K, T, y, x); observed: (..., K, y, x) mm/h; mask: like observed (True = use)."""
        prob = np.asarray(prob, dtype=np.float32)
        observed = np.asarray(observed, dtype=np.float32)
        valid = np.isfinite(observed) if mask is None else (np.asarray(mask, dtype=bool) & np.isfinite(observed))
        bins = prob_bin(np.nan_to_num(prob, nan=0.0))
        obs = np.nan_to_num(observed, nan=0.0)
        nk, nt = self.n_leads, len(self.thresholds)
        # flat index over (K, T, bin); leading batch axes folded in
        lead = np.arange(nk).reshape((nk, 1, 1, 1))
        thr = np.arange(nt).reshape((1, nt, 1, 1))
        base = (lead * nt + thr) * N_BINS  # (K, T, 1, 1)
        for j, t in enumerate(self.thresholds):
            exceed = obs >= t  # (..., K, y, x)
            idx = (base[:, j] + bins[..., j, :, :])  # (..., K, y, x)
            pos = idx[valid & exceed]
            neg = idx[valid & ~exceed]
            size = nk * nt * N_BINS
            self.positive += np.bincount(pos, minlength=size).reshape(self.positive.shape)
            self.negative += np.bincount(neg, minlength=size).reshape(self.negative.shape)

    def merge(self, other: ExceedanceHistogram) -> None:
        if tuple(other.thresholds) != tuple(self.thresholds) or other.n_leads != self.n_leads:
            raise ValueError("cannot merge histograms of different thresholds or leads")
        self.positive += other.positive
        self.negative += other.negative

    def cumulative(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """hits, false alarms, misses (K, T, N_BINS) when forecasting 'yes' at P >= edge of bin b."""
        hits = np.cumsum(self.positive[..., ::-1], axis=-1)[..., ::-1]
        false = np.cumsum(self.negative[..., ::-1], axis=-1)[..., ::-1]
        misses = self.positive.sum(-1, keepdims=True) - hits
        return hits, false, misses

    def optimal_cuts(self, min_cut: float = MIN_CUT) -> np.ndarray:
        """(K, T) probability cuts maximising CSI per lead and threshold (>= ``min_cut``)."""
        hits, false, misses = self.cumulative()
        den = hits + false + misses
        csi = np.where(den > 0, hits / np.maximum(den, 1), 0.0)
        first = first_bin(min_cut)
        csi[..., :first] = -1.0
        best = np.argmax(csi, axis=-1)
        # a lead/threshold never observed: fall back to 0.5
        empty = self.positive.sum(-1) == 0
        cuts = bin_edge(best)
        cuts[empty] = 0.5
        return cuts

    def counts_at(self, cuts: np.ndarray) -> np.ndarray:
        """(K, T, 3) hits, misses, false alarms when cutting at ``cuts`` (K, T)."""
        hits, false, misses = self.cumulative()
        b = np.clip(np.rint(np.sqrt(np.asarray(cuts, dtype=np.float64)) * N_BINS).astype(int), 0, N_BINS - 1)[..., None]
        take = lambda a: np.take_along_axis(a, b, axis=-1)[..., 0]  # noqa: E731
        return np.stack([take(hits), take(misses), take(false)], axis=-1).astype(np.float64)


@dataclass(frozen=True)
class ThresholdCalibration:
    """Per-lead probability cuts (K, T) for the thresholds (T,) mm/h, fitted on validation data."""

    thresholds: tuple[float, ...]
    cuts: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"thresholds": list(map(float, self.thresholds)), "cuts": np.asarray(self.cuts, dtype=float).tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdCalibration:
        thresholds = tuple(float(t) for t in data["thresholds"])
        cuts = np.asarray(data["cuts"], dtype=np.float64)
        if cuts.ndim != 2 or cuts.shape[1] != len(thresholds):
            raise ValueError(f"calibration cuts must be (leads, {len(thresholds)}), got {cuts.shape}")
        return cls(thresholds, cuts)


def apply_threshold_calibration(rate: np.ndarray, prob: np.ndarray, calibration: ThresholdCalibration) -> np.ndarray:
    """The deterministic field whose exceedance areas are the calibrated probability areas.

    rate: (K, y, x) mm/h, the network's continuous field; prob: (K, T, y, x). Per cell, the
    level is the number of consecutive thresholds (from the lowest) whose probability reaches
    its cut; the rate is then clipped into ``[t_level, t_level+1)`` so that "rate >= t_j"
    holds exactly where the level reaches j. Returns (K, y, x) float32.
    """
    thr = np.asarray(calibration.thresholds, dtype=np.float32)
    cuts = np.asarray(calibration.cuts, dtype=np.float32)[: rate.shape[0]]
    k = rate.shape[0]
    # level: the number of consecutive thresholds (from the lowest) whose probability reaches its cut
    level = np.zeros((k,) + rate.shape[1:], dtype=np.uint8)
    alive = np.ones_like(level, dtype=bool)
    for j in range(cuts.shape[1]):
        alive &= prob[:k, j] >= cuts[:k, j, None, None]
        level += alive
    lower = np.concatenate([[0.0], thr]).astype(np.float32)[level]
    below = np.nextafter(np.concatenate([thr, [np.inf]]).astype(np.float32), np.float32(0.0))[level]
    out = np.clip(np.nan_to_num(rate, nan=0.0), lower, below)
    return out.astype(np.float32, copy=False)
