"""Isotonic lightning calibration: mergeable state, monotone map, recovery of a known miscalibration."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.models.lightning_calibration import LightningCalibration, LightningHistogram


def _sample(rng: np.random.Generator, n_leads: int, shape: tuple[int, int], power: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw probabilities whose true event probability is ``raw ** power`` (over-confident for power > 1)."""
    raw = rng.beta(0.3, 3.0, size=(n_leads, *shape))
    event = rng.uniform(size=raw.shape) < raw**power
    return raw, event.astype(np.float32) * rng.integers(1, 4, size=raw.shape)


def test_recovers_a_known_miscalibration_per_lead() -> None:
    rng = np.random.default_rng(0)
    hist = LightningHistogram(2)
    for _ in range(4):
        raw, obs = _sample(rng, 2, (200, 200), 2.0)
        obs[1] = (rng.uniform(size=raw[1].shape) < 0.5 * raw[1]).astype(np.float32)  # lead 2: true p = raw / 2
        hist.accumulate(raw, obs)
    cal = hist.fit()
    grid = np.array([0.05, 0.2, 0.4])  # beta(0.3, 3): few cases above 0.5
    got = cal.apply(np.stack([grid, grid])[:, :, None])[:, :, 0]
    np.testing.assert_allclose(got[0], grid**2, atol=0.03)
    np.testing.assert_allclose(got[1], grid / 2, atol=0.03)
    for k in range(2):
        assert np.all(np.diff(cal.x[k]) > 0) and np.all(np.diff(cal.y[k]) >= 0)


def test_calibrated_probabilities_are_reliable_on_fresh_data() -> None:
    rng = np.random.default_rng(1)
    hist = LightningHistogram(1)
    raw, obs = _sample(rng, 1, (400, 400), 3.0)
    hist.accumulate(raw, obs)
    cal = hist.fit()
    raw2, obs2 = _sample(rng, 1, (400, 400), 3.0)
    p = cal.apply(raw2)[0].ravel()
    o = (obs2[0].ravel() >= 1).astype(float)
    bins = np.clip((p * 10).astype(int), 0, 9)
    for b in range(10):
        sel = bins == b
        if sel.sum() >= 0.01 * p.size:
            assert abs(p[sel].mean() - o[sel].mean()) < 0.02, b
    brier_raw = np.mean((raw2[0].ravel() - o) ** 2)
    brier_cal = np.mean((p - o) ** 2)
    assert brier_cal < brier_raw


def test_nan_observations_are_masked_and_state_merges_exactly() -> None:
    rng = np.random.default_rng(2)
    raw, obs = _sample(rng, 3, (50, 60), 1.5)
    obs[:, :10] = np.nan
    whole = LightningHistogram(3)
    whole.accumulate(raw, obs)
    assert whole.positive.sum() + whole.negative.sum() == 3 * 40 * 60
    a, b = LightningHistogram(3), LightningHistogram(3)
    a.accumulate(raw[:, :25], obs[:, :25])
    b.accumulate(raw[:, 25:], obs[:, 25:])
    a.merge(b)
    np.testing.assert_array_equal(a.positive, whole.positive)
    np.testing.assert_array_equal(a.negative, whole.negative)
    np.testing.assert_allclose(a.sum_prob, whole.sum_prob)


def test_round_trip_and_validation() -> None:
    rng = np.random.default_rng(3)
    hist = LightningHistogram(2)
    hist.accumulate(*_sample(rng, 2, (100, 100), 2.0))
    cal = hist.fit()
    again = LightningCalibration.from_dict(cal.to_dict())
    p = rng.uniform(size=(2, 8, 8))
    np.testing.assert_array_equal(cal.apply(p), again.apply(p))
    with pytest.raises(ValueError, match="isotonic"):
        LightningCalibration.from_dict({**cal.to_dict(), "method": "platt"})
    bad = cal.to_dict()
    bad["y"][0] = bad["y"][0][::-1]
    if len(bad["y"][0]) > 1 and bad["y"][0][0] != bad["y"][0][-1]:
        with pytest.raises(ValueError, match="must not decrease"):
            LightningCalibration.from_dict(bad)
    with pytest.raises(ValueError, match="leads"):
        cal.apply(np.zeros((3, 4, 4)))


def test_no_validation_data_gives_identity() -> None:
    cal = LightningHistogram(1).fit()
    p = np.array([[[0.0, 0.3, 1.0]]])
    np.testing.assert_allclose(cal.apply(p), p)
