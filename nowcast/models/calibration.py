"""Threshold calibration of exceedance probabilities into a deterministic rain field.

A network with exceedance heads gives, per lead ``k`` and threshold ``t_j`` (mm/h), the
probability ``P_kj = P(rain >= t_j)``. A deterministic forecast that must score well at those
thresholds (CSI, MCC) should say "rain >= t_j" where ``P_kj >= p*_kj``; the CSI-optimal cut
``p*`` is usually well below 0.5 and grows less sharp with lead. The cuts are chosen on
validation data only (:class:`ExceedanceHistogram`, streaming and exactly mergeable), stored in
the checkpoint, and applied by :func:`apply_threshold_calibration`.

Conditioned on the residual guide (:class:`GuideConditionedHistogram`): a model that is residual
on a guide nowcast (S-PROG) can get two cuts per lead and threshold, one for the cells where the
guide itself exceeds the threshold and one for the cells where it does not. The pair of cuts
(0, never) reproduces the guide's own threshold area and a pair of equal cuts the unconditioned
field, so the validation data decide per lead how far the network may move the guide's areas.

Shapes: probabilities (K, T, y, x) float in [0, 1]; rates and observations (K, y, x) mm/h,
NaN = unknown (masked, never counted as dry).
"""

from __future__ import annotations

from collections.abc import Sequence
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


def _csi(hits: np.ndarray, den: np.ndarray) -> np.ndarray:
    """CSI ``hits / den`` (den = hits + misses + false alarms), 0 where nothing was forecast or
    observed (so a maximum over cuts never picks an empty choice by NaN)."""
    return np.where(den > 0, hits / np.maximum(den, 1), 0.0)


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

    def accumulate(self, prob: np.ndarray, observed: np.ndarray, mask: np.ndarray | None = None, threshold_mask: np.ndarray | None = None) -> None:
        """prob: (..., K, T, y, x); observed: (..., K, y, x) mm/h; mask: like observed (True = use);
        threshold_mask: like prob, a further selection per threshold (True = use)."""
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
            use = valid if threshold_mask is None else (valid & np.asarray(threshold_mask, dtype=bool)[..., j, :, :])
            pos = idx[use & exceed]
            neg = idx[use & ~exceed]
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
        csi = _csi(hits, hits + false + misses)
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


#: the cut that no probability reaches: "never exceeds" (probabilities lie in [0, 1])
NEVER = 2.0


@dataclass
class GuideConditionedHistogram:
    """Two :class:`ExceedanceHistogram` s: cells where the residual guide's rate is below each
    threshold (``below``) and where it reaches it (``above``)."""

    thresholds: tuple[float, ...]
    n_leads: int
    below: ExceedanceHistogram = field(default=None)  # type: ignore[assignment]
    above: ExceedanceHistogram = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.below is None:
            self.below = ExceedanceHistogram(self.thresholds, self.n_leads)
        if self.above is None:
            self.above = ExceedanceHistogram(self.thresholds, self.n_leads)

    def accumulate(self, prob: np.ndarray, observed: np.ndarray, guide: np.ndarray, mask: np.ndarray | None = None) -> None:
        """prob: (..., K, T, y, x); observed, guide: (..., K, y, x) mm/h; mask: like observed."""
        thr = np.asarray(self.thresholds, dtype=np.float32).reshape((-1, 1, 1))
        guide_exceeds = np.nan_to_num(np.asarray(guide, dtype=np.float32), nan=0.0)[..., None, :, :] >= thr  # (..., K, T, y, x)
        self.above.accumulate(prob, observed, mask, threshold_mask=guide_exceeds)
        self.below.accumulate(prob, observed, mask, threshold_mask=~guide_exceeds)

    def merge(self, other: GuideConditionedHistogram) -> None:
        self.below.merge(other.below)
        self.above.merge(other.above)

    @property
    def positive(self) -> np.ndarray:
        """Observed exceedances (K, T, N_BINS) over both sides."""
        return self.below.positive + self.above.positive

    def combined(self) -> ExceedanceHistogram:
        """The unconditioned histogram: both sides summed (the two sides partition the cells)."""
        return ExceedanceHistogram(self.thresholds, self.n_leads, self.positive, self.below.negative + self.above.negative)

    def _csi_grid(self, min_cut: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSI (K, T, N_BINS + 1, N_BINS) of every pair (below cut: bins then "never"; above
        cut: bins, 0 allowed), and the candidate cuts of each side."""
        hb, fb, _ = self.below.cumulative()
        ha, fa, _ = self.above.cumulative()
        zero = np.zeros(hb.shape[:-1] + (1,), dtype=hb.dtype)
        hb, fb = np.concatenate([hb, zero], axis=-1), np.concatenate([fb, zero], axis=-1)
        positives = self.positive.sum(-1)[..., None, None]
        hits = hb[..., :, None] + ha[..., None, :]
        csi = _csi(hits, positives + fb[..., :, None] + fa[..., None, :])
        csi[..., : first_bin(min_cut), :] = -1.0  # below the guide's threshold: no cut under min_cut
        below_cuts = np.concatenate([bin_edge(np.arange(N_BINS)), [NEVER]])
        return csi, below_cuts, bin_edge(np.arange(N_BINS))

    def optimal_cuts(self, min_cut: float = MIN_CUT) -> np.ndarray:
        """(K, T, 2) cuts [where the guide is below, where it reaches the threshold] maximising
        CSI per lead and threshold. A lead/threshold never observed wet: the guide's own area."""
        csi, below_cuts, above_cuts = self._csi_grid(min_cut)
        flat = csi.reshape(csi.shape[:2] + (-1,)).argmax(-1)
        ib, ia = np.unravel_index(flat, csi.shape[2:])
        cuts = np.stack([below_cuts[ib], above_cuts[ia]], axis=-1)
        cuts[self.positive.sum(-1) == 0] = (NEVER, 0.0)
        return cuts

    def switch_cuts(self, cuts: np.ndarray) -> np.ndarray:
        """(K, T, 2) cuts choosing per lead and threshold, by CSI on this histogram's data, between
        the single ``cuts`` (K, T) (both sides cut alike: the network's area) and the guide's own
        area ``(NEVER, 0)``; a tie keeps the network's. One choice per lead and threshold instead
        of two fitted cuts: little to overfit on one validation event."""
        single = np.repeat(np.asarray(cuts, dtype=np.float64)[..., None], 2, axis=-1)
        guide = np.broadcast_to(np.array([NEVER, 0.0]), single.shape)

        def csi(c: np.ndarray) -> np.ndarray:
            counts = self.counts_at(c)  # (K, T, 3): hits, misses, false alarms
            return _csi(counts[..., 0], counts.sum(-1))

        return np.where((csi(guide) > csi(single))[..., None], guide, single)

    def counts_at(self, cuts: np.ndarray) -> np.ndarray:
        """(K, T, 3) hits, misses, false alarms when cutting at ``cuts`` (K, T, 2)."""
        cuts = np.asarray(cuts, dtype=np.float64)
        below = self.below.counts_at(np.minimum(cuts[..., 0], 1.0))
        never = cuts[..., 0] > 1.0
        below[never, 0] = 0.0  # no hits ...
        below[never, 1] = self.below.positive.sum(-1)[never]  # ... every exceedance missed
        below[never, 2] = 0.0  # ... and no false alarm
        return below + self.above.counts_at(cuts[..., 1])


def nearest_class(cell_size_m: float | None, classes_m: Sequence[float]) -> int | None:
    """Index of the resolution class (cell size, m) nearest to ``cell_size_m`` on a log scale,
    when within a factor of 2 of it; None when there is none (or no cell size)."""
    if cell_size_m is None or not np.isfinite(cell_size_m) or cell_size_m <= 0 or not len(classes_m):
        return None
    ratios = np.abs(np.log2(float(cell_size_m) / np.asarray(classes_m, dtype=np.float64)))
    i = int(np.argmin(ratios))
    return i if ratios[i] <= 1.0 else None


@dataclass(frozen=True)
class ThresholdCalibration:
    """Per-lead probability cuts for the thresholds (T,) mm/h, fitted on validation data: (K, T),
    or (K, T, 2) conditioned on the residual guide ([guide below t_j, guide >= t_j]).

    ``classes``: resolution classes with their own cuts, ``(cell size in m, cuts)``, fitted on
    that class's validation events only; a grid within a factor of 2 of a class's cell size uses
    its cuts, any other grid the pooled ``cuts``.
    """

    thresholds: tuple[float, ...]
    cuts: np.ndarray
    classes: tuple[tuple[float, np.ndarray], ...] = ()

    @property
    def conditioned(self) -> bool:
        """True when the cuts depend on the residual guide's own verdict per cell."""
        return np.asarray(self.cuts).ndim == 3

    def cuts_for(self, cell_size_m: float | None) -> np.ndarray:
        """The cuts for a grid of ``cell_size_m`` metres (the pooled cuts without a class)."""
        i = nearest_class(cell_size_m, [c for c, _ in self.classes])
        return np.asarray(self.cuts if i is None else self.classes[i][1])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"thresholds": list(map(float, self.thresholds)), "cuts": np.asarray(self.cuts, dtype=float).tolist()}
        if self.conditioned:
            out["condition"] = "residual_guide"
        if self.classes:
            out["classes"] = [{"cell_size_m": float(c), "cuts": np.asarray(k, dtype=float).tolist()} for c, k in self.classes]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdCalibration:
        thresholds = tuple(float(t) for t in data["thresholds"])
        conditioned = data.get("condition") == "residual_guide"
        shape = f"(leads, {len(thresholds)}, 2)" if conditioned else f"(leads, {len(thresholds)})"

        def checked(raw: Any, what: str) -> np.ndarray:
            cuts = np.asarray(raw, dtype=np.float64)
            if cuts.ndim != (3 if conditioned else 2) or cuts.shape[1] != len(thresholds) or (conditioned and cuts.shape[2] != 2):
                raise ValueError(f"{what} must be {shape}, got {cuts.shape}")
            return cuts

        classes = tuple((float(c["cell_size_m"]), checked(c["cuts"], f"calibration cuts of class {c['cell_size_m']} m")) for c in data.get("classes", []))
        return cls(thresholds, checked(data["cuts"], "calibration cuts"), classes)


def apply_threshold_calibration(
    rate: np.ndarray, prob: np.ndarray, calibration: ThresholdCalibration, guide: np.ndarray | None = None, cell_size_m: float | None = None
) -> np.ndarray:
    """The deterministic field whose exceedance areas are the calibrated probability areas.

    rate: (K, y, x) mm/h, the network's continuous field; prob: (K, T, y, x); guide: (K, y, x)
    mm/h, the residual guide's rate (required by conditioned cuts); cell_size_m: the grid's cell
    size, which picks a resolution class's cuts (:meth:`ThresholdCalibration.cuts_for`). Per cell, the level is the
    number of consecutive thresholds (from the lowest) whose probability reaches its cut; the
    rate is then clipped into ``[t_level, t_level+1)`` so that "rate >= t_j" holds exactly where
    the level reaches j. Returns (K, y, x) float32.
    """
    thr = np.asarray(calibration.thresholds, dtype=np.float32)
    cuts = np.asarray(calibration.cuts_for(cell_size_m), dtype=np.float32)[: rate.shape[0]]
    k = rate.shape[0]
    if calibration.conditioned:
        if guide is None:
            raise ValueError("conditioned calibration cuts need the residual guide's rate")
        guide = np.nan_to_num(np.asarray(guide, dtype=np.float32)[:k], nan=0.0)
    # level: the number of consecutive thresholds (from the lowest) whose probability reaches its cut
    level = np.zeros((k,) + rate.shape[1:], dtype=np.uint8)
    alive = np.ones_like(level, dtype=bool)
    for j in range(cuts.shape[1]):
        if calibration.conditioned:
            cut = np.where(guide >= thr[j], cuts[:k, j, 1, None, None], cuts[:k, j, 0, None, None])
        else:
            cut = cuts[:k, j, None, None]
        alive &= prob[:k, j] >= cut
        level += alive
    lower = np.concatenate([[0.0], thr]).astype(np.float32)[level]
    below = np.nextafter(np.concatenate([thr, [np.inf]]).astype(np.float32), np.float32(0.0))[level]
    out = np.clip(np.nan_to_num(rate, nan=0.0), lower, below)
    return out.astype(np.float32, copy=False)
