"""Calibration of the lightning probability: isotonic regression per lead, fitted on validation data.

The network's lightning head is trained with a weighted BCE (``lightning_pos_weight``), so its
raw probability ranks cells well but over-states the chance of a stroke. The event it is
calibrated for is **at least one stroke (flash) in a grid cell during the store's interval
(``cadence``) ending at the lead time** (on the synthetic domain: a 2 km x 2 km cell, a 5-minute
window).

:class:`LightningHistogram` is the streaming, exactly mergeable state: per lead, counts of
observed events and non-events in fine bins of the raw probability (edges uniform on the
square-root axis, fine near 0 where most cells lie), and the sum of the raw probabilities per
bin. :meth:`LightningHistogram.fit` runs the pool-adjacent-violators algorithm over the bins
(weighted by their counts), giving per lead a non-decreasing step function; the result
(:class:`LightningCalibration`) is a monotone piecewise-linear map from raw to calibrated
probability through the pooled blocks' (mean raw probability, observed frequency) points,
stored in the checkpoint and applied by the ConvLSTM adapter.

Shapes: probabilities (K, y, x) float in [0, 1] (K leads); observations (K, y, x) flash counts,
NaN = unknown (masked, never counted as "no stroke").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: raw-probability bins: edges (b / N_BINS) ** 2, b = 0..N_BINS (first edge 2.5e-5)
N_BINS = 200
#: a calibration block pooled from fewer validation cases is merged with its neighbour
MIN_BLOCK = 50


def _bins(prob: np.ndarray) -> np.ndarray:
    return np.clip((np.sqrt(np.clip(prob, 0.0, 1.0)) * N_BINS).astype(np.int64), 0, N_BINS - 1)


@dataclass
class LightningHistogram:
    """Per lead: events, non-events and raw-probability sums in :data:`N_BINS` bins."""

    n_leads: int
    positive: np.ndarray = field(default=None)  # type: ignore[assignment]  # (K, N_BINS) int64
    negative: np.ndarray = field(default=None)  # type: ignore[assignment]
    sum_prob: np.ndarray = field(default=None)  # type: ignore[assignment]  # (K, N_BINS) float64

    def __post_init__(self) -> None:
        shape = (self.n_leads, N_BINS)
        if self.positive is None:
            self.positive = np.zeros(shape, dtype=np.int64)
        if self.negative is None:
            self.negative = np.zeros(shape, dtype=np.int64)
        if self.sum_prob is None:
            self.sum_prob = np.zeros(shape, dtype=np.float64)

    def accumulate(self, prob: np.ndarray, observed: np.ndarray, mask: np.ndarray | None = None, occurrence: float = 1.0) -> None:
        """prob: (..., K, y, x) raw probability; observed: same shape, flashes per cell per
        interval (event: ``>= occurrence``); mask: same shape, True = use (NaN observations never)."""
        prob = np.asarray(prob, dtype=np.float64)
        observed = np.asarray(observed, dtype=np.float64)
        if prob.shape != observed.shape:
            raise ValueError(f"prob {prob.shape} and observed {observed.shape} differ")
        if prob.shape[-3] != self.n_leads:
            raise ValueError(f"expected {self.n_leads} leads on axis -3, got {prob.shape}")
        valid = np.isfinite(observed) & np.isfinite(prob)
        if mask is not None:
            valid &= np.asarray(mask, dtype=bool)
        lead = np.broadcast_to(np.arange(self.n_leads).reshape(-1, 1, 1), prob.shape)
        idx = lead * N_BINS + _bins(np.nan_to_num(prob))
        event = np.nan_to_num(observed) >= occurrence
        size = self.n_leads * N_BINS
        self.positive += np.bincount(idx[valid & event], minlength=size).reshape(self.positive.shape)
        self.negative += np.bincount(idx[valid & ~event], minlength=size).reshape(self.negative.shape)
        self.sum_prob += np.bincount(idx[valid], weights=prob[valid], minlength=size).reshape(self.sum_prob.shape)

    def merge(self, other: LightningHistogram) -> None:
        if other.n_leads != self.n_leads:
            raise ValueError("cannot merge histograms of different leads")
        self.positive += other.positive
        self.negative += other.negative
        self.sum_prob += other.sum_prob

    def csi_cuts(self, calibration: LightningCalibration) -> tuple[np.ndarray, np.ndarray]:
        """Per lead, the calibrated-probability cut with the best CSI on these counts, and that CSI.

        A cell is "yes" when its calibrated probability is >= the cut; every cell of a bin is
        taken at the bin's mean raw probability (fine bins). Returns ``(cuts (K,), csi (K,))``;
        a lead without events gets cut 1.0 and CSI NaN.
        """
        cuts = np.ones(self.n_leads)
        best = np.full(self.n_leads, np.nan)
        for k in range(self.n_leads):
            n = self.positive[k] + self.negative[k]
            if self.positive[k].sum() == 0:
                continue
            mean_raw = np.where(n > 0, self.sum_prob[k] / np.maximum(n, 1), 0.0)
            cal = np.interp(mean_raw, calibration.x[k], calibration.y[k])
            for v in np.unique(cal[(n > 0) & (cal > 0)]):
                yes = cal >= v
                hits = self.positive[k][yes].sum()
                den = self.positive[k].sum() + self.negative[k][yes].sum()
                csi = hits / den if den else 0.0
                if not csi <= best[k]:  # also replaces NaN
                    best[k], cuts[k] = csi, float(v)
        return cuts, best

    def fit(self, min_block: int = MIN_BLOCK) -> LightningCalibration:
        """Isotonic (PAV) calibration per lead; see the module docstring."""
        xs, ys = [], []
        for k in range(self.n_leads):
            x, y = _isotonic(self.positive[k], self.negative[k], self.sum_prob[k], min_block)
            xs.append(x)
            ys.append(y)
        return LightningCalibration(tuple(xs), tuple(ys))


def _isotonic(pos: np.ndarray, neg: np.ndarray, psum: np.ndarray, min_block: int) -> tuple[np.ndarray, np.ndarray]:
    """PAV over non-empty bins; returns knots (mean raw probability, observed frequency)."""
    n = (pos + neg).astype(np.float64)
    keep = n > 0
    if not keep.any():
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])  # no validation data: identity
    # blocks: [weight, events, raw sum]; adjacent violators (and too-small blocks) are pooled
    blocks: list[list[float]] = []
    for w, e, s in zip(n[keep], pos[keep].astype(np.float64), psum[keep], strict=True):
        blocks.append([w, e, s])
        while len(blocks) > 1 and (
            blocks[-2][1] / blocks[-2][0] >= blocks[-1][1] / blocks[-1][0] or blocks[-2][0] < min_block
        ):
            w2, e2, s2 = blocks.pop()
            blocks[-1][0] += w2
            blocks[-1][1] += e2
            blocks[-1][2] += s2
    if len(blocks) > 1 and blocks[-1][0] < min_block:  # a thin last block joins its neighbour
        w2, e2, s2 = blocks.pop()
        blocks[-1] = [blocks[-1][0] + w2, blocks[-1][1] + e2, blocks[-1][2] + s2]
    x = np.array([b[2] / b[0] for b in blocks])
    y = np.array([b[1] / b[0] for b in blocks])
    y = np.maximum.accumulate(y)  # merging thin blocks can leave a tie or tiny dip: keep monotone
    # outside the knots np.interp holds the end values (constant extension)
    x, first = np.unique(x, return_index=True)
    return x, y[first]


@dataclass(frozen=True)
class LightningCalibration:
    """Per lead: knots ``x`` (raw probability, increasing) and ``y`` (calibrated, non-decreasing)."""

    x: tuple[np.ndarray, ...]
    y: tuple[np.ndarray, ...]
    #: what the probability is of (stated on cards and in the API)
    event: str = "at least one stroke in the grid cell during the store interval ending at the lead time"

    @property
    def n_leads(self) -> int:
        return len(self.x)

    def apply(self, prob: np.ndarray) -> np.ndarray:
        """Calibrate raw probabilities (K, y, x) (K <= n_leads) -> float32 of the same shape."""
        prob = np.asarray(prob)
        if prob.shape[0] > self.n_leads:
            raise ValueError(f"calibration has {self.n_leads} leads, probabilities {prob.shape[0]}")
        out = np.empty(prob.shape, dtype=np.float32)
        for k in range(prob.shape[0]):
            out[k] = np.interp(prob[k], self.x[k], self.y[k])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"method": "isotonic", "event": self.event, "x": [a.tolist() for a in self.x], "y": [a.tolist() for a in self.y]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LightningCalibration:
        if data.get("method") != "isotonic":
            raise ValueError(f"unknown lightning calibration method {data.get('method')!r}; valid: isotonic")
        xs = tuple(np.asarray(a, dtype=np.float64) for a in data["x"])
        ys = tuple(np.asarray(a, dtype=np.float64) for a in data["y"])
        if len(xs) != len(ys) or any(a.shape != b.shape or a.ndim != 1 or a.size < 1 for a, b in zip(xs, ys, strict=True)):
            raise ValueError("lightning calibration: x and y must be per-lead 1-D arrays of equal, non-zero length")
        if any(np.any(np.diff(a) <= 0) for a in xs) or any(np.any(np.diff(b) < 0) for b in ys):
            raise ValueError("lightning calibration: x must increase and y must not decrease")
        return cls(xs, ys, str(data.get("event", cls.event)))
