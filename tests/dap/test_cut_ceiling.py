"""The exact pooled-CSI ceiling of probability cuts (training.dap.cuts.pooled_csi_cuts)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nowcast.models.calibration import N_BINS, ExceedanceHistogram
from training.dap.cuts import pooled_csi_cuts


def _random_histogram(rng: np.random.Generator, n_leads: int) -> ExceedanceHistogram:
    """Counts concentrated on a few probability bins (positives more likely at high bins)."""
    h = ExceedanceHistogram((1.0,), n_leads)
    for k in range(n_leads):
        for b in rng.choice(np.arange(4, N_BINS), size=6, replace=False):
            p = (b / N_BINS) ** 2
            h.positive[k, 0, b] = rng.integers(0, 400) * p
            h.negative[k, 0, b] = rng.integers(0, 400) * (1 - p)
    return h


def _pooled_csi(hists: list[ExceedanceHistogram], members: list[tuple[int, int]], cuts: list[float]) -> float:
    hits = den = 0.0
    for (i, k), c in zip(members, cuts, strict=True):
        h, m, f = hists[i].counts_at(np.full((hists[i].n_leads, 1), c))[k, 0]
        hits, den = hits + h, den + h + m + f
    return hits / den if den else 0.0


def test_pooled_cuts_reach_the_brute_force_optimum_where_cadences_meet() -> None:
    rng = np.random.default_rng(4)
    for _ in range(3):
        hists = [_random_histogram(rng, 2), _random_histogram(rng, 2)]
        best = pooled_csi_cuts(hists, [5.0, 10.0])  # minutes: a at 5, 10; b at 10, 20
        edges = [((b / N_BINS) ** 2) for b in range(4, N_BINS)]
        group = [(0, 1), (1, 0)]  # the two forecasts meeting at 10 minutes
        brute = max(_pooled_csi(hists, group, list(c)) for c in itertools.product(edges, edges))
        got = _pooled_csi(hists, group, [best[0][1, 0], best[1][0, 0]])
        assert got == pytest.approx(brute, rel=1e-12)
        for i, k in ((0, 0), (1, 1)):  # a lead time only one forecast has: its own best cut
            assert _pooled_csi(hists, [(i, k)], [best[i][k, 0]]) == _pooled_csi(hists, [(i, k)], [hists[i].optimal_cuts()[k, 0]])
