"""Exceedance heads, smoothed guide channels and the validation-fitted probability cuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from model_data import blob_frames, make_history

from nowcast import dims
from nowcast.models import create_nowcaster
from nowcast.models.calibration import (
    NEVER,
    ExceedanceHistogram,
    GuideConditionedHistogram,
    ThresholdCalibration,
    apply_threshold_calibration,
)
from nowcast.models.network import EncoderForecaster, ModelConfig


def _csi(f: np.ndarray, o: np.ndarray) -> float:
    h = np.count_nonzero(f & o)
    return h / max(1, np.count_nonzero(f | o))


def test_histogram_cut_maximises_csi_like_brute_force() -> None:
    rng = np.random.default_rng(3)
    k, t, n = 2, 2, 4000
    prob = rng.random((k, t, 1, n)).astype(np.float32)
    obs = np.where(rng.random((k, 1, n)) < prob[:, 0] * 0.8, 3.0, 0.2).astype(np.float32)
    obs[:, :, :50] = np.nan  # unknown cells are never counted
    hist = ExceedanceHistogram((1.0, 2.0), k)
    hist.accumulate(prob, obs)
    cuts = hist.optimal_cuts()
    valid = np.isfinite(obs[0, 0])
    for lead in range(k):
        for j, thr in enumerate((1.0, 2.0)):
            o = obs[lead, 0][valid] >= thr
            p = prob[lead, j, 0][valid]
            best = max(_csi(p >= (c / 100) ** 2, o) for c in range(4, 100))
            assert _csi(p >= cuts[lead, j], o) == pytest.approx(best, abs=1e-12)
            h, m, f = hist.counts_at(cuts)[lead, j]
            assert h / (h + m + f) == pytest.approx(best, abs=1e-12)


def test_histograms_merge_exactly() -> None:
    rng = np.random.default_rng(0)
    prob = rng.random((2, 3, 1, 8, 8)).astype(np.float32)
    obs = rng.gamma(0.5, 3.0, (2, 3, 8, 8)).astype(np.float32)
    whole = ExceedanceHistogram((1.0,), 3)
    whole.accumulate(prob, obs)
    a, b = ExceedanceHistogram((1.0,), 3), ExceedanceHistogram((1.0,), 3)
    a.accumulate(prob[:1], obs[:1])
    b.accumulate(prob[1:], obs[1:])
    a.merge(b)
    np.testing.assert_array_equal(a.positive, whole.positive)
    np.testing.assert_array_equal(a.negative, whole.negative)
    with pytest.raises(ValueError, match="different thresholds"):
        a.merge(ExceedanceHistogram((2.0,), 3))


def test_calibrated_field_exceeds_exactly_where_the_probability_reaches_its_cut() -> None:
    rng = np.random.default_rng(1)
    thr = (0.5, 1.0, 5.0)
    cal = ThresholdCalibration(thr, np.array([[0.3, 0.4, 0.2]] * 2))
    prob = np.sort(rng.random((2, 3, 16, 16)), axis=1)[:, ::-1].astype(np.float32)  # P decreasing in t
    rate = rng.gamma(0.7, 3.0, (2, 16, 16)).astype(np.float32)
    out = apply_threshold_calibration(rate, prob, cal)
    for j, t in enumerate(thr):
        expected = np.all(prob[:, : j + 1] >= cal.cuts[0, : j + 1, None, None], axis=1)
        np.testing.assert_array_equal(out >= t, expected)
    inside = (out > 0.5) & (out < 1.0) & (rate > 0.5) & (rate < 1.0)
    np.testing.assert_array_equal(out[inside], rate[inside])  # the continuous field kept within a class
    back = ThresholdCalibration.from_dict(cal.to_dict())
    assert back.thresholds == thr and np.allclose(back.cuts, cal.cuts)
    with pytest.raises(ValueError, match="cuts must be"):
        ThresholdCalibration.from_dict({"thresholds": [1.0], "cuts": [0.5, 0.5]})


def test_heads_start_at_the_guide_prior_and_smoothing_is_a_normalised_blur() -> None:
    cfg = ModelConfig(n_inputs=3, n_leads=2, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4, lightning=False, residual_zero_init=True, probability_thresholds=[1.0, 5.0], guide_smoothing=[2.0])
    net = EncoderForecaster(cfg)
    x = torch.rand(1, 3, 2, 32, 32)
    g = torch.zeros(1, 2, 1, 32, 32)
    g[..., 10:20, 10:20] = 2.0  # scaled rain well above 5 mm/h inside the square
    out = net.forward_all(x, g)
    p = torch.sigmoid(out.exceedance_logit)
    assert out.exceedance_logit.shape == (1, 2, 2, 32, 32)
    assert p[0, 0, 0, 15, 15] > 0.9 and p[0, 0, 0, 0, 0] < 0.01  # inside / far outside
    sm = net._with_smoothed(g)
    assert sm.shape == (1, 2, 2, 32, 32)
    assert torch.isclose(sm[0, 0, 1].sum(), g[0, 0, 0].sum(), rtol=1e-3)  # mass kept (away from edges)
    with pytest.raises(ValueError, match="strictly increasing"):
        ModelConfig(probability_thresholds=[5.0, 1.0])
    with pytest.raises(ValueError, match="need a guide"):
        ModelConfig(advection="none", guide_smoothing=[2.0])
    with pytest.raises(ValueError, match="need a guide"):
        ModelConfig(advection="none", prior_levels=4)


def test_neighbourhood_prior_spreads_with_lead_and_is_a_probability() -> None:
    """The learned multiscale prior starts sharp at short leads and broad at long ones."""
    cfg = ModelConfig(n_inputs=3, n_leads=15, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4, lightning=False, residual_zero_init=True, probability_thresholds=[1.0], prior_levels=6)
    net = EncoderForecaster(cfg)
    g = torch.zeros(1, 15, 1, 64, 64)
    g[..., 24:40, 24:40] = 1.5  # ~20 mm/h square
    p = torch.sigmoid(net.forward_all(torch.rand(1, 3, 2, 64, 64), g).exceedance_logit)[0, :, 0]
    assert ((p >= 0) & (p <= 1)).all()
    assert p[0, 32, 32] > 0.9 and p[0, 32, 44] < 0.05  # lead 1: sharp
    assert p[14, 32, 32] < p[0, 32, 32] and p[14, 32, 44] > p[0, 32, 44]  # lead 15: spread out
    # the mixture weights are trainable parameters (with their own learning rate in the loop)
    assert net.prior_logits.shape == (15, 1, 6) and net.prior_logits.requires_grad


def test_prior_classes_pick_each_samples_prior_by_cell_size(tmp_path: Path) -> None:
    """``prior_classes_m``: one prior per resolution class; each sample of a mixed batch gets the
    class nearest its cell size (log scale), the adapter passes the grid's cell size, and a grid of
    unknown size gets the classes' mean weights. Without classes the parameter keeps its layout."""
    from training.checkpoint import save_checkpoint

    base = dict(n_inputs=3, n_leads=4, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4, lightning=False,
                residual_zero_init=True, probability_thresholds=[1.0], prior_levels=4)
    cfg = ModelConfig(**base, prior_classes_m=[2000.0, 240.0])
    net = EncoderForecaster(cfg)
    assert net.prior_logits.shape == (2, 4, 1, 4) and net.prior_logits.requires_grad
    assert EncoderForecaster(ModelConfig(**base)).prior_logits.shape == (4, 1, 4)  # earlier checkpoints still load
    with torch.no_grad():  # class 0 (2 km): all weight on the sharp level; class 1 (240 m): on the coarsest
        net.prior_logits.zero_()
        net.prior_logits[0, ..., 0] = 30.0
        net.prior_logits[1, ..., 3] = 30.0
    torch.manual_seed(0)
    x, g = torch.rand(1, 3, 2, 32, 32), torch.zeros(1, 4, 1, 32, 32)
    g[..., 12:20, 12:20] = 1.5
    sharp, coarse, mixed = (torch.sigmoid(net.forward_all(x, g, c).exceedance_logit)[0, 0, 0] for c in (1900.0, 250.0, None))
    assert sharp[16, 16] > 0.95 and sharp[16, 22] < 0.05  # the sharp class reproduces the guide's area
    assert 0.1 < coarse[16, 22] < 0.9 and coarse[16, 16] < 0.9  # the coarse class spreads it
    torch.testing.assert_close(mixed, (sharp + coarse) / 2, atol=2e-3, rtol=0)  # unknown size: the mean prior
    pair = torch.sigmoid(net.forward_all(x.expand(2, -1, -1, -1, -1), g.expand(2, -1, -1, -1, -1), torch.tensor([250.0, 1900.0])).exceedance_logit)
    torch.testing.assert_close(pair[0, 0, 0], coarse)
    torch.testing.assert_close(pair[1, 0, 0], sharp)
    with pytest.raises(ValueError, match="one positive cell size"):
        net.forward_all(x, g, torch.tensor([250.0, 1900.0]))
    with pytest.raises(ValueError, match="needs the neighbourhood prior"):
        ModelConfig(**{**base, "prior_levels": 0}, prior_classes_m=[2000.0])
    with pytest.raises(ValueError, match="distinct positive"):
        ModelConfig(**base, prior_classes_m=[240.0, 240.0])
    # the adapter: the grid's cell size picks the class (make_history's grid: 1 km cells -> the 2 km class)
    path = tmp_path / "classes.pt"
    save_checkpoint(path, {"model_config": cfg.model_dump(), "state_dict": net.state_dict()})
    m = create_nowcaster("convlstm", checkpoint=path)
    h = make_history(blob_frames(3))
    rain, light = h[dims.RAIN_RATE].values, h[dims.LIGHTNING].values
    cell = m.predict_all(rain, light, 1000.0)[2]
    np.testing.assert_array_equal(cell, m.predict_all(rain, light, 2000.0)[2])
    assert not np.array_equal(cell, m.predict_all(rain, light, 240.0)[2])


def test_adapter_applies_the_checkpoint_calibration(tmp_path: Path) -> None:
    from training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(n_inputs=3, n_leads=15, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4, lightning=False, residual_zero_init=True, probability_thresholds=[1.0, 5.0])
    net = EncoderForecaster(cfg)
    cuts = np.full((15, 2), 0.3)
    path = tmp_path / "cal.pt"
    save_checkpoint(path, {"model_config": cfg.model_dump(), "state_dict": net.state_dict(), "calibration": ThresholdCalibration((1.0, 5.0), cuts).to_dict()})
    m = create_nowcaster("convlstm", checkpoint=path)
    h = make_history(blob_frames(3))
    rain, light = h[dims.RAIN_RATE].values, h[dims.LIGHTNING].values
    rate, _, exceed = m.predict_all(rain, light)
    np.testing.assert_array_equal(rate >= 1.0, exceed[:, 0] >= 0.3)
    fc = m.forecast(h)[dims.RAIN_RATE].values
    np.testing.assert_array_equal(np.nan_to_num(fc) >= 1.0, exceed[:, 0] >= 0.3)


def test_sprog_guide_source_is_the_sprog_nowcast_and_feeds_the_prior() -> None:
    """``guide_sources = ["sprog", "extrapolation"]``: channel 0 is S-PROG's own nowcast (the
    registry's ``sprog`` on the same history), channel 1 the LK extrapolation; the prior mixes both."""
    from nowcast.models.convlstm import guide_features, guide_key, input_features
    from nowcast.models.sprog import SProg
    from nowcast.transforms import scaled_to_rainrate

    frames = blob_frames(6, u=1.0, v=0.5)
    texture = np.random.default_rng(0).gamma(2.0, 0.5, size=frames.shape[1:])  # small scales for S-PROG to damp
    hist = make_history((frames * texture).astype(np.float32))
    rain = hist[dims.RAIN_RATE].values.astype(np.float32)
    light = hist[dims.LIGHTNING].values.astype(np.float32)
    both = ModelConfig(n_inputs=3, n_leads=6, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4, lightning=False,
                       residual_zero_init=True, probability_thresholds=[1.0], prior_levels=4, guide_sources=["sprog", "extrapolation"])
    lk_only = both.model_copy(update={"guide_sources": ["extrapolation"]})
    g, g_lk = guide_features(rain, light, both), guide_features(rain, light, lk_only)
    assert g.shape == (6, 2, 64, 64) and g_lk.shape == (6, 1, 64, 64)
    np.testing.assert_allclose(g[:, 1], g_lk[:, 0])  # the extrapolation channel is unchanged
    sprog = SProg().forecast(hist, [pd.Timedelta(minutes=5 * k) for k in range(1, 7)])[dims.RAIN_RATE].values
    np.testing.assert_allclose(scaled_to_rainrate(g[:, 0]), np.nan_to_num(sprog), rtol=1e-4, atol=1e-3)
    assert not np.allclose(g[:, 0], g[:, 1])  # S-PROG smooths: it is not the extrapolation
    assert guide_key(rain, light, both) != guide_key(rain, light, lk_only)  # never a stale cached guide
    net = EncoderForecaster(both)
    assert net.prior_logits.shape == (6, 1, 8)
    out = net.forward_all(torch.from_numpy(input_features(rain, light, both))[None], torch.from_numpy(g)[None])
    assert out.exceedance_logit.shape == (1, 6, 1, 64, 64)
    # residual base = the first source: an untrained zero-init network forecasts S-PROG's field
    torch.testing.assert_close(out.rain[0], torch.from_numpy(g[:, 0]))
    with pytest.raises(ValueError, match="distinct"):
        ModelConfig(guide_sources=["sprog", "sprog"])


def _conditioned_case(seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """prob (K, T, 1, n), observed and guide (K, 1, n) mm/h: a guide that is right more often
    than the probabilities where it says rain."""
    rng = np.random.default_rng(seed)
    k, n = 2, 3000
    obs = np.where(rng.random((k, 1, n)) < 0.3, 3.0, 0.2).astype(np.float32)
    guide = np.where(rng.random((k, 1, n)) < 0.8, obs, 3.2 - obs).astype(np.float32)
    prob = np.clip((obs >= 1.0)[:, None] * 0.3 + rng.random((k, 2, 1, n)) * 0.7, 0, 1).astype(np.float32)
    obs[:, :, :40] = np.nan  # unknown cells are never counted
    return prob, obs, guide


def test_guide_conditioned_cuts_maximise_csi_like_brute_force() -> None:
    prob, obs, guide = _conditioned_case()
    hist = GuideConditionedHistogram((1.0, 2.0), 2)
    hist.accumulate(prob, obs, guide)
    cuts = hist.optimal_cuts()
    assert cuts.shape == (2, 2, 2)
    valid = np.isfinite(obs[0, 0])
    below = [(c / 100) ** 2 for c in range(4, 100)] + [NEVER]
    above = [(c / 100) ** 2 for c in range(0, 100)]
    for lead in range(2):
        for j, thr in enumerate((1.0, 2.0)):
            o, p, g = obs[lead, 0][valid] >= thr, prob[lead, j, 0][valid], guide[lead, 0][valid] >= thr
            best = max(_csi(np.where(g, p >= ca, p >= cb), o) for cb in below for ca in above)
            chosen = _csi(np.where(g, p >= cuts[lead, j, 1], p >= cuts[lead, j, 0]), o)
            assert chosen == pytest.approx(best, abs=1e-12)
            h, m, f = hist.counts_at(cuts)[lead, j]
            assert h / (h + m + f) == pytest.approx(best, abs=1e-12)
            # (never, 0) counts the guide's own area; a pair of equal cuts, the unconditioned field
            guide_own = hist.counts_at(np.full((2, 2, 2), (NEVER, 0.0)))[lead, j]
            np.testing.assert_array_equal(guide_own, [np.sum(g & o), np.sum(~g & o), np.sum(g & ~o)])
            single = ExceedanceHistogram((thr,), 1)
            single.accumulate(prob[lead : lead + 1, j : j + 1], obs[lead : lead + 1])
            c = single.optimal_cuts()[0, 0]
            np.testing.assert_array_equal(hist.counts_at(np.full((2, 2, 2), c))[lead, j], single.counts_at(np.full((1, 1), c))[0, 0])


def test_switch_cuts_pick_the_better_area_per_lead_and_threshold() -> None:
    """Per lead and threshold: the guide's own area where it scores the higher CSI, else the
    network's single cut on both sides; ties keep the network's."""
    prob, obs, guide = _conditioned_case(seed=3)
    hist = GuideConditionedHistogram((1.0, 2.0), 2)
    hist.accumulate(prob, obs, guide)
    single = np.array([[0.2, 0.3], [0.25, 0.35]])
    chosen = hist.switch_cuts(single)
    assert chosen.shape == (2, 2, 2)
    valid = np.isfinite(obs[0, 0])
    picked = set()
    for lead in range(2):
        for j, thr in enumerate((1.0, 2.0)):
            o, p, g = obs[lead, 0][valid] >= thr, prob[lead, j, 0][valid], guide[lead, 0][valid] >= thr
            net, own = _csi(p >= single[lead, j], o), _csi(g, o)
            expected = (NEVER, 0.0) if own > net else (single[lead, j], single[lead, j])
            np.testing.assert_array_equal(chosen[lead, j], expected)
            picked.add(own > net)
    # a perfect guide is always chosen; uninformative probabilities never beat it
    perfect = GuideConditionedHistogram((1.0, 2.0), 2)
    perfect.accumulate(prob, obs, obs)
    assert (perfect.switch_cuts(single) == np.array([NEVER, 0.0])).all()
    # a useless guide (never wet) is never chosen when the network has any hit
    dry = GuideConditionedHistogram((1.0, 2.0), 2)
    dry.accumulate(prob, obs, np.zeros_like(obs))
    np.testing.assert_array_equal(dry.switch_cuts(single), np.repeat(single[..., None], 2, axis=-1))


def test_guide_conditioned_histogram_merges_exactly_and_counts_every_valid_cell() -> None:
    prob, obs, guide = _conditioned_case(seed=1)
    whole = GuideConditionedHistogram((1.0, 2.0), 2)
    whole.accumulate(prob, obs, guide)
    a, b = GuideConditionedHistogram((1.0, 2.0), 2), GuideConditionedHistogram((1.0, 2.0), 2)
    a.accumulate(prob[..., :1000], obs[..., :1000], guide[..., :1000])
    b.accumulate(prob[..., 1000:], obs[..., 1000:], guide[..., 1000:])
    a.merge(b)
    np.testing.assert_array_equal(a.above.positive + a.below.positive, whole.above.positive + whole.below.positive)
    np.testing.assert_array_equal(a.above.negative, whole.above.negative)
    n_valid = np.isfinite(obs).sum(axis=(1, 2))  # per lead
    for j in range(2):
        total = whole.above.positive[:, j] + whole.above.negative[:, j] + whole.below.positive[:, j] + whole.below.negative[:, j]
        np.testing.assert_array_equal(total.sum(-1), n_valid)


def test_a_perfect_guide_is_kept_by_the_conditioned_cuts() -> None:
    """When the guide's own area is the best answer, the cuts reproduce it: (never, 0)."""
    rng = np.random.default_rng(2)
    obs = np.where(rng.random((1, 1, 2000)) < 0.3, 3.0, 0.1).astype(np.float32)
    prob = rng.random((1, 1, 1, 2000)).astype(np.float32)  # uninformative probabilities
    hist = GuideConditionedHistogram((1.0,), 1)
    hist.accumulate(prob, obs, obs)
    cuts = hist.optimal_cuts()
    assert cuts[0, 0, 0] == NEVER and cuts[0, 0, 1] == 0.0
    cal = ThresholdCalibration((1.0,), cuts)
    rate = rng.random((1, 1, 2000)).astype(np.float32) * 4
    out = apply_threshold_calibration(rate, prob[:, :, :, :], cal, guide=obs)
    np.testing.assert_array_equal(out >= 1.0, obs >= 1.0)
    assert hist.counts_at(cuts)[0, 0, 2] == 0  # no false alarm


def test_conditioned_calibration_round_trips_and_needs_the_guide() -> None:
    cuts = np.zeros((3, 2, 2))
    cuts[..., 0] = 0.4
    cuts[..., 1] = 0.1
    cal = ThresholdCalibration((1.0, 5.0), cuts)
    assert cal.conditioned and cal.to_dict()["condition"] == "residual_guide"
    back = ThresholdCalibration.from_dict(cal.to_dict())
    np.testing.assert_array_equal(back.cuts, cuts)
    assert back.conditioned
    assert not ThresholdCalibration.from_dict({"thresholds": [1.0, 5.0], "cuts": cuts[..., 0].tolist()}).conditioned
    with pytest.raises(ValueError, match=r"\(leads, 2, 2\)"):
        ThresholdCalibration.from_dict({"thresholds": [1.0, 5.0], "cuts": cuts[..., 0].tolist(), "condition": "residual_guide"})
    prob = np.full((3, 2, 2, 2), 0.2, dtype=np.float32)
    rate = np.full((3, 2, 2), 2.0, dtype=np.float32)
    with pytest.raises(ValueError, match="residual guide"):
        apply_threshold_calibration(rate, prob, cal)
    guide = np.array([[[0.0, 1.0], [6.0, np.nan]]] * 3, dtype=np.float32)
    out = apply_threshold_calibration(rate, prob, cal, guide=guide)
    # p = 0.2: below the guide-dry cut 0.4, above the guide-wet cut 0.1 (NaN guide = dry)
    np.testing.assert_array_equal(out[0] >= 1.0, [[False, True], [True, False]])
    np.testing.assert_array_equal(out[0] >= 5.0, [[False, False], [True, False]])


def test_adapter_applies_cuts_conditioned_on_its_residual_guide(tmp_path: Path) -> None:
    from nowcast.transforms import scaled_to_rainrate
    from training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(n_inputs=3, n_leads=15, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4, lightning=False, residual_zero_init=True, probability_thresholds=[1.0, 5.0])
    net = EncoderForecaster(cfg)
    cuts = np.zeros((15, 2, 2))
    cuts[..., 0], cuts[..., 1] = 0.6, 0.05
    path = tmp_path / "cal.pt"
    save_checkpoint(path, {"model_config": cfg.model_dump(), "state_dict": net.state_dict(), "calibration": ThresholdCalibration((1.0, 5.0), cuts).to_dict()})
    m = create_nowcaster("convlstm", checkpoint=path)
    assert m.calibration.conditioned
    h = make_history(blob_frames(3))
    rain, light = h[dims.RAIN_RATE].values, h[dims.LIGHTNING].values
    from nowcast.models.convlstm import guide_features

    base = scaled_to_rainrate(guide_features(rain, light, cfg)[:, 0])
    rate, _, exceed = m.predict_all(rain, light)
    expected = np.where(base >= 1.0, exceed[:, 0] >= 0.05, exceed[:, 0] >= 0.6)
    np.testing.assert_array_equal(rate >= 1.0, expected)
    assert (base >= 1.0).any() and (expected != (exceed[:, 0] >= 0.6)).any()  # the condition mattered


def test_resolution_classes_pick_their_own_cuts_within_a_factor_of_two() -> None:
    from nowcast.models.calibration import nearest_class

    pooled, two_km, x_band = np.full((3, 1), 0.3), np.full((3, 1), 0.2), np.full((3, 1), 0.5)
    cal = ThresholdCalibration((1.0,), pooled, ((2000.0, two_km), (240.0, x_band)))
    assert nearest_class(1999.3, [2000.0, 240.0]) == 0 and nearest_class(250.0, [2000.0, 240.0]) == 1
    assert nearest_class(1000.0, [2000.0, 240.0]) == 0  # log-nearest, within a factor of 2
    assert nearest_class(5000.0, [2000.0, 240.0]) is None and nearest_class(None, [2000.0]) is None
    np.testing.assert_array_equal(cal.cuts_for(2000.0), two_km)
    np.testing.assert_array_equal(cal.cuts_for(300.0), x_band)
    np.testing.assert_array_equal(cal.cuts_for(10_000.0), pooled)
    np.testing.assert_array_equal(cal.cuts_for(None), pooled)
    back = ThresholdCalibration.from_dict(cal.to_dict())
    assert [c for c, _ in back.classes] == [2000.0, 240.0]
    np.testing.assert_array_equal(back.cuts_for(2100.0), two_km)
    with pytest.raises(ValueError, match="class 2000.0 m"):
        ThresholdCalibration.from_dict({**cal.to_dict(), "classes": [{"cell_size_m": 2000.0, "cuts": [0.1, 0.2]}]})
    prob = np.full((3, 1, 2, 2), 0.25, dtype=np.float32)
    rate = np.full((3, 2, 2), 3.0, dtype=np.float32)
    assert (apply_threshold_calibration(rate, prob, cal, cell_size_m=2000.0) >= 1.0).all()  # 0.25 >= 0.2
    assert not (apply_threshold_calibration(rate, prob, cal, cell_size_m=None) >= 1.0).any()  # 0.25 < 0.3


def test_validation_fits_each_resolution_class_its_own_cuts() -> None:
    """Training's cut fitting: the 2 km items of a mixed batch get cuts fitted on them alone, the
    pooled cuts come from every item, and the reported counts are those of the cuts each item gets."""
    from training.loop import Trainer

    rng = np.random.default_rng(4)
    b, k, n = 4, 2, 400
    obs = np.where(rng.random((b, k, 1, n)) < 0.4, 3.0, 0.1).astype(np.float32)
    wet = obs >= 1.0
    # 2 km items: rain where p > 0.2; X-band items: rain only where p > 0.7
    prob = rng.random((b, k, 1, 1, n)).astype(np.float32)
    prob[:2, :, 0] = np.where(wet[:2], 0.2 + 0.8 * prob[:2, :, 0], 0.2 * prob[:2, :, 0])
    prob[2:, :, 0] = np.where(wet[2:], 0.7 + 0.3 * prob[2:, :, 0], 0.7 * prob[2:, :, 0])
    batch = {
        "target_rate": torch.from_numpy(obs), "mask": torch.ones(obs.shape, dtype=torch.bool),
        "guide": torch.zeros((b, k, 1, 1, n)), "cell_size_m": torch.tensor([2000.0, 2000.0, 240.0, 250.0]),
    }
    hists = {0: ExceedanceHistogram((1.0,), k), None: ExceedanceHistogram((1.0,), k)}
    Trainer._accumulate_cuts(hists, [2000.0], batch, prob, conditioned=False)
    cal, counts = Trainer._fit_cuts(hists, [2000.0], (1.0,))
    own, rest, whole = (ExceedanceHistogram((1.0,), k) for _ in range(3))
    own.accumulate(prob[:2], obs[:2])
    rest.accumulate(prob[2:], obs[2:])
    whole.accumulate(prob, obs)
    np.testing.assert_array_equal(cal.cuts, whole.optimal_cuts())
    assert len(cal.classes) == 1 and cal.classes[0][0] == 2000.0
    np.testing.assert_array_equal(cal.classes[0][1], own.optimal_cuts())
    assert (cal.classes[0][1] < 0.3).all() and (cal.cuts > cal.classes[0][1]).all()  # the classes differ
    np.testing.assert_array_equal(counts, own.counts_at(own.optimal_cuts()) + rest.counts_at(whole.optimal_cuts()))
