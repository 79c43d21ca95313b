"""Error sums and Brier/reliability states: hand values, NaN masking, degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.metrics import BrierReliability, ErrorSums, ScoreSuite


def test_error_sums_hand_values_and_nan() -> None:
    f = np.array([[[1.0, 2.0], [3.0, np.nan]]])
    o = np.array([[[0.0, 4.0], [np.nan, 1.0]]])
    st = ErrorSums.init(1)
    st.accumulate(f, o)
    s = st.compute()
    assert int(st.n[0]) == 2
    assert s["me"][0] == pytest.approx(((1 - 0) + (2 - 4)) / 2)
    assert s["mae"][0] == pytest.approx(1.5)
    assert s["rmse"][0] == pytest.approx(np.sqrt((1 + 4) / 2))
    assert np.isnan(ErrorSums.init(2).compute()["mae"]).all()


def test_brier_and_reliability_hand_values() -> None:
    p = np.array([[[0.05, 0.95, 0.95, 0.45]]])
    o = np.array([[[0.0, 2.0, 0.0, 1.0]]])
    st = BrierReliability.init(1, occurrence=1.0, n_bins=10)
    st.accumulate(p, o)
    s = st.compute()
    assert s["brier"][0] == pytest.approx((0.05**2 + 0.05**2 + 0.95**2 + 0.55**2) / 4)
    assert s["base_rate"][0] == pytest.approx(0.5)
    assert st.count[0].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 0, 2]
    assert s["reliability_observed"][0, 9] == pytest.approx(0.5)
    assert s["reliability_forecast"][0, 9] == pytest.approx(0.95)
    assert np.isnan(s["reliability_observed"][0, 1])


def test_brier_masks_unknown_lightning_and_rejects_bad_probabilities() -> None:
    st = BrierReliability.init(1)
    st.accumulate(np.array([[[0.2, 0.9]]]), np.array([[[np.nan, 3.0]]]))
    assert int(st.count.sum()) == 1
    with pytest.raises(ValueError, match="probability"):
        st.accumulate(np.array([[[1.5]]]), np.array([[[0.0]]]))


def test_score_suite_roundtrip_merge_and_diff() -> None:
    import xarray as xr

    rng = np.random.default_rng(0)

    def ds(rain: np.ndarray, light: np.ndarray, prob: bool) -> xr.Dataset:
        name = "lightning_probability" if prob else "lightning"
        return xr.Dataset(
            {"rain_rate": (("lead_time", "y", "x"), rain), name: (("lead_time", "y", "x"), light)}
        )

    kw = dict(
        n_leads=2, thresholds=[0.5, 2.0], fss_thresholds=[1.0], fss_scales=[1, 3], lightning=True
    )
    a, b, pooled = ScoreSuite.init(**kw), ScoreSuite.init(**kw), ScoreSuite.init(**kw)
    for i in range(4):
        f = ds(rng.gamma(0.5, 3, (2, 6, 6)), rng.uniform(0, 1, (2, 6, 6)), True)
        o = ds(rng.gamma(0.5, 3, (2, 6, 6)), rng.poisson(0.5, (2, 6, 6)).astype(float), False)
        pooled.accumulate(f, o)
        (a if i % 2 else b).accumulate(f, o)
    a.merge(b)
    # integer states merge exactly; float64 sums to rounding (order of additions differs)
    assert (
        a.rain == pooled.rain
        and a.lightning == pooled.lightning
        and a.errors.n.tolist() == pooled.errors.n.tolist()
    )
    assert a.reliability.count.tolist() == pooled.reliability.count.tolist()
    assert np.allclose(a.fss.sum_fct_sq, pooled.fss.sum_fct_sq, rtol=1e-14, atol=0)
    back = ScoreSuite.from_dict(pooled.to_dict())
    assert back == pooled and back.diff(pooled) == []
    s = pooled.compute()
    assert (
        s["csi"].shape == (2, 2)
        and s["fss"].shape == (2, 1, 2)
        and s["lightning_mcc"].shape == (2,)
    )
    back.errors.n[0] += 1
    assert back.diff(pooled) == ["errors.n"]


def test_all_missing_observations_give_nan_everywhere_not_a_crash() -> None:
    import xarray as xr

    suite = ScoreSuite.init(
        n_leads=2, thresholds=[1.0], fss_thresholds=[1.0], fss_scales=[3], lightning=True
    )
    f = xr.Dataset(
        {
            "rain_rate": (("lead_time", "y", "x"), np.ones((2, 5, 5))),
            "lightning_probability": (("lead_time", "y", "x"), np.full((2, 5, 5), 0.5)),
        }
    )
    o = xr.Dataset(
        {
            "rain_rate": (("lead_time", "y", "x"), np.full((2, 5, 5), np.nan)),
            "lightning": (("lead_time", "y", "x"), np.full((2, 5, 5), np.nan)),
        }
    )
    suite.accumulate(f, o)
    for name, value in suite.compute().items():
        if name != "reliability_count":
            assert np.isnan(value).all(), name
    assert int(suite.rain.correct_negatives.sum()) == 0
