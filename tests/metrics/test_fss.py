"""FSS sums: agreement with pysteps, NaN masking, degenerate cases, exact merge."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.metrics import FractionsSkillScore


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.maximum(gaussian_filter(rng.normal(0, 1, shape), 3) * 20, 0.0)


def test_agrees_with_pysteps_fss() -> None:
    from pysteps.verification.spatialscores import fss

    rng = np.random.default_rng(7)
    f = np.stack([_smooth_field(rng, (40, 50)) for _ in range(2)])
    o = np.stack([_smooth_field(rng, (40, 50)) for _ in range(2)])
    thresholds, scales = [0.5, 2.0], [1, 3, 8, 15]
    st = FractionsSkillScore.init(thresholds, scales, n_leads=2)
    st.accumulate(f, o)
    got = st.compute()["fss"]
    for k in range(2):
        for i, thr in enumerate(thresholds):
            for j, sc in enumerate(scales):
                assert got[k, i, j] == pytest.approx(
                    fss(f[k], o[k], thr, sc), rel=1e-12, nan_ok=True
                )


def test_identical_fields_score_one_and_no_events_nan() -> None:
    rng = np.random.default_rng(3)
    a = _smooth_field(rng, (30, 30))[None]
    st = FractionsSkillScore.init([0.5, 1e6], [1, 5], 1)
    st.accumulate(a, a.copy())
    got = st.compute()["fss"]
    assert np.allclose(got[0, 0], 1.0)
    assert np.isnan(got[0, 1]).all()  # threshold never reached: undefined, not 0


def test_nan_cells_masked_in_both_fields() -> None:
    rng = np.random.default_rng(5)
    a = _smooth_field(rng, (30, 30))[None]
    obs = a.copy()
    obs[0, :10] = np.nan
    fc = a.copy()
    fc[0, :10] = 50.0  # garbage where there is no observation must not matter
    st = FractionsSkillScore.init([0.5], [1, 5], 1)
    st.accumulate(fc, obs)
    assert np.allclose(st.compute()["fss"], 1.0)


def test_merge_is_exact_sum() -> None:
    rng = np.random.default_rng(9)
    fields = [
        (_smooth_field(rng, (20, 20))[None], _smooth_field(rng, (20, 20))[None]) for _ in range(4)
    ]
    pooled = FractionsSkillScore.init([1.0], [3], 1)
    a, b = FractionsSkillScore.init([1.0], [3], 1), FractionsSkillScore.init([1.0], [3], 1)
    for i, (f, o) in enumerate(fields):
        pooled.accumulate(f, o)
        (a if i < 2 else b).accumulate(f, o)
    a.merge(b)
    assert np.allclose(a.sum_fct_obs, pooled.sum_fct_obs, rtol=1e-14, atol=0)
    assert FractionsSkillScore.from_dict(a.to_dict()) == a
