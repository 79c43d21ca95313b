"""The retrain decision: forecast the held-out period with challenger, champion and baseline
(per start time, through the evaluation kernel), compare them with a paired block bootstrap,
and decide whether the challenger is promoted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nowcast import dims
from nowcast.evaluation import score_case
from nowcast.metrics.categorical import ContingencyTable, scores_from_counts
from training.retrain.config import EvaluationConfig

if TYPE_CHECKING:
    from nowcast.store import ObservationStoreLike


@dataclass
class Comparison:
    """Paired comparison of two methods on the same start times."""

    candidate: str
    reference: str
    score: str
    candidate_score: float
    reference_score: float
    difference: float
    interval: tuple[float, float]
    confidence: float
    n_cases: int
    n_blocks: int


@dataclass
class CaseTables:
    """Per-start-time contingency counts (n_cases, n_leads, 4: hits, misses, false alarms,
    correct negatives) of one method at one threshold."""

    counts: list[np.ndarray] = field(default_factory=list)

    def add(self, table: ContingencyTable) -> None:
        self.counts.append(
            np.stack([table.hits[:, 0], table.misses[:, 0], table.false_alarms[:, 0], table.correct_negatives[:, 0]], axis=-1)
        )

    def array(self) -> np.ndarray:
        return np.asarray(self.counts, dtype=np.int64)


def score_of(counts: np.ndarray, score: str) -> np.ndarray:
    """``score`` from counts (..., 4); NaN where undefined."""
    return scores_from_counts(counts[..., 0], counts[..., 1], counts[..., 2], counts[..., 3])[score]


def block_bootstrap(
    cand: np.ndarray, ref: np.ndarray, blocks: np.ndarray, score: str, n: int, confidence: float, seed: int
) -> tuple[float, tuple[float, float]]:
    """Paired block bootstrap of ``score(cand) - score(ref)`` from pooled counts.

    cand, ref: (n_cases, 4) int64 counts per start time (leads pooled); blocks: (n_cases,)
    block id per case. Blocks of consecutive start times are resampled with replacement (the
    same draw for both methods), counts pooled, the score computed from the pooled tables.
    Returns the point difference and the percentile interval.
    """
    point = float(score_of(cand.sum(0), score) - score_of(ref.sum(0), score))
    ids = np.unique(blocks)
    cb = np.stack([cand[blocks == b].sum(0) for b in ids])
    rb = np.stack([ref[blocks == b].sum(0) for b in ids])
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(ids), size=(n, len(ids)))
    diffs = score_of(cb[draw].sum(1), score) - score_of(rb[draw].sum(1), score)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return point, (float("nan"), float("nan"))
    a = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [a, 1 - a])
    return point, (float(lo), float(hi))


def evaluate_methods(
    methods: dict[str, Any],
    store: ObservationStoreLike,
    period: tuple[pd.Timestamp, pd.Timestamp],
    ev: EvaluationConfig,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], pd.DatetimeIndex, dict[str, int]]:
    """Forecast every ``stride`` in ``period`` with each method and tabulate against observations.

    Returns per-method counts (n_cases, n_leads, 4) at ``ev.threshold`` for leads
    ``lead_min..lead_max`` (every cadence), the used start times, and skip counts. A start
    time is skipped (documented) when any input frame of any method or any verifying frame is
    missing; a method that raises on a case fails the whole evaluation (no silent drops).

    The forecast-and-score step of each case is the evaluation kernel's
    (:func:`nowcast.evaluation.score_case`). The loop around it is not
    :func:`nowcast.evaluation.score_starts`, on purpose: the block bootstrap needs one table
    per start time (``score_starts`` pools them), every method must be scored on the same
    start times from one read of the inputs, the criterion scores only the leads
    ``lead_min..lead_max`` and start times are every ``stride`` in the period with the skips
    counted (``start_times`` drops them silently). Same counts as before the kernel existed.
    """
    cadence = store.cadence
    stride = pd.Timedelta(minutes=ev.stride_minutes)
    all_leads = [cadence * k for k in range(1, int(pd.Timedelta(minutes=ev.lead_max_minutes) / cadence) + 1)]
    keep = np.array([lead >= pd.Timedelta(minutes=ev.lead_min_minutes) for lead in all_leads])
    n_in = max(int(getattr(m, "n_inputs", 1)) for m in methods.values())
    starts = pd.date_range(period[0], period[1], freq=stride)
    stored = set(store.times())
    tables = {name: CaseTables() for name in methods}
    used: list[pd.Timestamp] = []
    skipped = {"missing_inputs": 0, "missing_observations": 0}
    iterator: Any = starts
    if progress:
        from tqdm import tqdm

        iterator = tqdm(starts, desc="evaluate", unit="start", leave=False)
    for t in iterator:
        inputs = pd.date_range(end=t, periods=n_in, freq=cadence)
        if any(x not in stored for x in inputs):
            skipped["missing_inputs"] += 1
            continue
        valid = [t + lead for lead in all_leads]
        if any(v not in stored for k, v in enumerate(valid) if keep[k]):
            skipped["missing_observations"] += 1
            continue
        history = store.window(t, n_in)
        obs = store.read_times([v for k, v in enumerate(valid) if keep[k]])
        o = np.asarray(obs[dims.RAIN_RATE].values)
        for name, model in methods.items():
            hist = history.isel({dims.TIME: slice(n_in - int(getattr(model, "n_inputs", 1)), None)})
            table = ContingencyTable.init([ev.threshold], int(keep.sum()))
            score_case(model, hist, all_leads, o, table, keep=keep)
            tables[name].add(table)
        used.append(t)
    return {k: v.array() for k, v in tables.items()}, pd.DatetimeIndex(used), skipped


def summarize_scores(counts: np.ndarray, score: str, leads: list[int]) -> dict[str, Any]:
    """Pooled score, per-lead scores and pooled counts of one method."""
    pooled = counts.sum(axis=(0, 1))
    per_lead = score_of(counts.sum(0), score)
    return {
        score: _num(score_of(pooled, score)),
        "per_lead": {str(m): _num(v) for m, v in zip(leads, per_lead, strict=True)},
        "counts": {k: int(v) for k, v in zip(("hits", "misses", "false_alarms", "correct_negatives"), pooled, strict=True)},
    }


def _num(x: Any) -> float | None:
    v = float(x)
    return v if np.isfinite(v) else None


def compare(
    pooled: dict[str, np.ndarray], reference: str, blocks: np.ndarray, ev: EvaluationConfig, seed: int
) -> Comparison:
    """The challenger against ``reference`` on the same start times.

    ``pooled``: method -> counts (n_cases, 4) with the leads pooled; ``blocks``: (n_cases,)
    bootstrap block id of each start time.
    """
    point, ci = block_bootstrap(pooled["challenger"], pooled[reference], blocks, ev.score, ev.bootstrap, ev.confidence, seed)
    return Comparison(
        "challenger", reference, ev.score,
        float(score_of(pooled["challenger"].sum(0), ev.score)), float(score_of(pooled[reference].sum(0), ev.score)),
        point, ci, ev.confidence, len(blocks), len(np.unique(blocks)),
    )


def decide(comparisons: list[Comparison], ev: EvaluationConfig, champion: str | None) -> tuple[bool, str]:
    """``(promote, reason)``. ``comparisons``: against the champion first when there is one
    (``champion``: its version id), then the baseline. With a champion the challenger must beat
    it; without one, the baseline (``first_champion = "beat_baseline"``) or nothing (``"always"``).
    Beating means: difference > ``min_improvement`` and, with ``require_interval``, the lower
    bound of the interval > 0.
    """
    decisive = comparisons[0] if champion is not None or ev.first_champion == "beat_baseline" else None
    if decisive is None:
        return True, "no champion yet (first_champion = always)"
    lo = decisive.interval[0]
    ref_label = f"{decisive.reference}" + (f" {champion}" if decisive.reference == "champion" else "")
    desc = (
        f"{ev.score} {decisive.candidate_score:.4f} vs {ref_label} {decisive.reference_score:.4f}: "
        f"difference {decisive.difference:+.4f}, {ev.confidence:.0%} interval [{lo:+.4f}, {decisive.interval[1]:+.4f}]"
    )
    if not np.isfinite(decisive.difference):
        return False, f"score undefined (no events at {ev.threshold:g} mm/h in the evaluation period?): {desc}"
    if decisive.difference <= ev.min_improvement:
        return False, f"not better than the {decisive.reference}: {desc}"
    if ev.require_interval and not (np.isfinite(lo) and lo > 0):
        return False, f"improvement not significant (interval includes a loss): {desc}"
    return True, f"beats the {decisive.reference}: {desc}"


__all__ = [
    "CaseTables",
    "Comparison",
    "block_bootstrap",
    "compare",
    "decide",
    "evaluate_methods",
    "score_of",
    "summarize_scores",
]
