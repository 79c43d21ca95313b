"""Losses and configuration validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nowcast.config import ConfigError, load_config
from nowcast.transforms import rainrate_to_scaled
from training.config import DataConfig, TrainConfig, TrainOptions, parse_options
from training.losses import intensity_weights, lightning_loss, rain_loss

ROOT = Path(__file__).resolve().parents[2]


def _t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32).reshape(1, 1, 1, -1)


def _s(t: torch.Tensor) -> torch.Tensor:
    """Scaled rain of a tensor of rates (through the numpy transform)."""
    return torch.from_numpy(rainrate_to_scaled(t.numpy())).float()


def test_intensity_weights_follow_the_classes() -> None:
    opts = TrainOptions()
    w = intensity_weights(_t(0.0, 0.49, 0.5, 3.0, 7.0, 20.0, 100.0), opts)
    assert w.flatten().tolist() == [1.0, 1.0, 2.0, 5.0, 10.0, 30.0, 50.0]


def test_rain_loss_ignores_masked_cells_and_weights_heavy_rain() -> None:
    opts = TrainOptions(exceedance_weight=0.0)
    rate = _t(0.0, 20.0, 5.0)
    target = _s(rate)
    mask = torch.tensor([True, True, False]).reshape(1, 1, 1, -1)
    pred = target.clone()
    pred[..., 2] += 10.0  # error only where the observation is missing
    assert rain_loss(pred, target, rate, mask, opts).item() == 0.0
    err_light, err_heavy = target.clone(), target.clone()
    err_light[..., 0] += 0.5
    err_heavy[..., 1] += 0.5
    assert rain_loss(err_heavy, target, rate, mask, opts) > 10 * rain_loss(err_light, target, rate, mask, opts)


def test_exceedance_term_rewards_crossing_the_threshold() -> None:
    opts = TrainOptions(mse_weight=0.0, mae_weight=0.0, exceedance_weight=1.0, exceedance_thresholds=[5.0])
    rate = _t(8.0)
    mask = torch.ones_like(rate, dtype=torch.bool)
    below, above = _s(_t(4.0)), _s(_t(6.0))
    assert rain_loss(above, _s(rate), rate, mask, opts) < 0.2 * rain_loss(below, _s(rate), rate, mask, opts)


def test_lightning_loss_is_masked() -> None:
    opts = TrainOptions()
    logit, occ = _t(5.0, -5.0), _t(1.0, 1.0)
    both = lightning_loss(logit, occ, torch.ones_like(occ, dtype=torch.bool), opts)
    first = lightning_loss(logit, occ, torch.tensor([True, False]).reshape(1, 1, 1, -1), opts)
    assert first < 0.1 < both


def test_options_validation() -> None:
    with pytest.raises(ValueError, match="intensity_weights"):
        TrainOptions(intensity_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="unknown option tables"):
        parse_options({"model": {}, "trian": {}})
    with pytest.raises(ValueError, match="overlap"):
        DataConfig(store="x", train=[("2024-01-01", "2024-01-02")], val=[("2024-01-01T12:00", "2024-01-03")])
    with pytest.raises(ValueError, match="held out"):
        DataConfig(store="x", train=[("2024-01-01", "2024-01-02")], val=[("2024-01-03", "2024-01-04")], test=[("2024-01-02", "2024-01-02T06:00")])


@pytest.mark.parametrize("name", ["train-synthetic.toml", "train-real.toml"])
def test_shipped_configs_validate(name: str) -> None:
    cfg = load_config(TrainConfig, ROOT / "configs" / name)
    assert cfg.data is not None and cfg.model.advection == "residual"
    model, opts = parse_options(cfg.options())
    assert model == cfg.model and opts == cfg.train


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[train]\nepochs = 0\n")
    with pytest.raises(ConfigError, match=r"bad.toml: invalid configuration: train.epochs"):
        load_config(TrainConfig, p)


def test_soft_csi_loss_rewards_hits_and_ignores_dry_cells() -> None:
    opts = TrainOptions(mse_weight=0.0, mae_weight=0.0, exceedance_weight=1.0, exceedance_thresholds=[1.0], exceedance_loss="soft_csi")
    rate = _t(3.0, 0.0, 0.0, 0.0)
    mask = torch.ones_like(rate, dtype=torch.bool)
    hit = _s(_t(3.0, 0.0, 0.0, 0.0))
    miss = _s(_t(0.0, 0.0, 0.0, 0.0))
    false_alarm = _s(_t(3.0, 3.0, 0.0, 0.0))
    l_hit, l_miss, l_fa = (rain_loss(p, _s(rate), rate, mask, opts).item() for p in (hit, miss, false_alarm))
    assert l_hit < 0.05 and l_miss > 0.4 and l_hit < l_fa < l_miss
    # adding correctly forecast dry cells changes nothing (unlike a per-cell mean)
    rate2 = torch.cat([rate, torch.zeros(1, 1, 1, 100)], dim=-1)
    miss2 = torch.cat([miss, torch.zeros(1, 1, 1, 100)], dim=-1)
    assert rain_loss(miss2, _s(rate2), rate2, torch.ones_like(rate2, dtype=torch.bool), opts).item() == pytest.approx(l_miss, abs=1e-3)


def test_head_soft_csi_term_is_added_with_its_weight_and_rewards_the_right_areas() -> None:
    from training.losses import head_soft_csi_loss, total_loss

    torch.manual_seed(0)
    b, k, h, w = 2, 3, 8, 8
    rate = torch.zeros(b, k, h, w)
    rate[..., :4, :] = 3.0  # the upper half rains 3 mm/h
    mask = torch.ones(b, k, h, w, dtype=torch.bool)
    thresholds = [1.0, 5.0]
    right = torch.full((b, k, 2, h, w), -20.0)
    right[:, :, 0, :4, :] = 20.0  # P(>= 1) high exactly where it rains, P(>= 5) low everywhere
    wrong = -right
    assert head_soft_csi_loss(right, rate, mask, thresholds) < 0.01
    assert head_soft_csi_loss(wrong, rate, mask, thresholds) > 0.99
    batch = {"target": rainrate_to_scaled(rate), "target_rate": rate, "mask": mask}
    rain = torch.zeros(b, k, h, w)
    base = TrainOptions(exceedance_head_weight=1.0)
    with_csi = TrainOptions(exceedance_head_weight=1.0, exceedance_head_csi_weight=0.5)
    logits = torch.randn(b, k, 2, h, w)
    plain = total_loss(rain, rain, batch, base, False, logits, thresholds)
    added = total_loss(rain, rain, batch, with_csi, False, logits, thresholds)
    torch.testing.assert_close(added - plain, 0.5 * head_soft_csi_loss(logits, rate, mask, thresholds))
