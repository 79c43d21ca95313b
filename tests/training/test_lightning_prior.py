"""The lightning head's bias starts at the configured prior probability (rare strokes)."""

from __future__ import annotations

import math

import pytest
import torch

from nowcast.models.network import EncoderForecaster, ModelConfig
from training.config import TrainOptions
from training.loop import init_lightning_bias


def test_bias_is_the_logit_of_the_prior_and_only_that_channel_changes() -> None:
    torch.manual_seed(0)
    net = EncoderForecaster(ModelConfig(channels=[4], kernels=[3], strides=[2], stem_channels=4, n_leads=2, lightning=True))
    before = net.head[-1].bias.detach().clone()
    init_lightning_bias(net, 0.02)
    after = net.head[-1].bias.detach()
    assert after[1].item() == pytest.approx(math.log(0.02 / 0.98))
    assert torch.equal(torch.cat([after[:1], after[2:]]), torch.cat([before[:1], before[2:]]))
    # with a zero last-layer weight the head says exactly the prior
    with torch.no_grad():
        net.head[-1].weight[1].zero_()
    out = net.forward_all(torch.zeros(1, 2, 3, 8, 8), torch.zeros(1, 2, 2, 8, 8))
    assert torch.sigmoid(out.lightning_logit).mean().item() == pytest.approx(0.02, rel=1e-5)


def test_prior_must_be_a_probability() -> None:
    assert TrainOptions(lightning_prior=0.01).lightning_prior == 0.01
    assert TrainOptions().lightning_prior is None
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError):
            TrainOptions(lightning_prior=bad)


def test_validation_brier_uses_each_leads_calibration() -> None:
    import numpy as np

    from nowcast.models.lightning_calibration import LightningHistogram
    from training.loop import lightning_validation_scores

    rng = np.random.default_rng(0)
    raw = rng.beta(0.3, 3.0, size=(2, 300, 300))
    obs = np.stack([rng.uniform(size=raw[0].shape) < raw[0] ** 2, rng.uniform(size=raw[1].shape) < 0.1 * raw[1]]).astype(float)
    hist = LightningHistogram(2)
    hist.accumulate(raw, obs)
    cal = hist.fit()
    scores = lightning_validation_scores(hist, cal)
    p = cal.apply(raw)
    assert scores["val_lightning_brier"] == pytest.approx(float(np.mean((p - obs) ** 2)), rel=0.02)
    assert scores["val_lightning_brier_raw"] == pytest.approx(float(np.mean((raw - obs) ** 2)), rel=0.02)
