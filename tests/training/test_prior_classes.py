"""Training with one neighbourhood prior per resolution class (``model.prior_classes_m``)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from train_helpers import TINY_OPTIONS, run_fit

from nowcast.models.convlstm import read_checkpoint
from nowcast.models.network import EncoderForecaster, ModelConfig
from training.config import TrainOptions, check_compatible
from training.loop import seed_everything


def test_training_moves_only_the_prior_of_the_class_it_sees(tiny_store, splits, guide_cache: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """Every training window of the store falls in the class nearest its cell size: that class's
    prior weights learn, the other class's stay at their initial values (no gradient, no decay)."""
    cell = tiny_store.grid.cell_size_m
    o = copy.deepcopy(TINY_OPTIONS)
    o["model"].update(probability_thresholds=[1.0, 5.0], lightning=False, prior_levels=3, prior_classes_m=[cell, 20.0 * cell])
    o["train"].update(epochs=1, cache_dir=str(guide_cache))
    ckpt = read_checkpoint(run_fit(tiny_store, splits, o, tmp_path / "run"))
    start = EncoderForecaster(ModelConfig.model_validate(ckpt["model_config"])).prior_logits.detach()
    trained = ckpt["state_dict"]["prior_logits"]
    assert trained.shape == start.shape == (2, *start.shape[1:])
    assert (trained[0] - start[0]).abs().max() > 1e-3  # the store's class learned
    torch.testing.assert_close(trained[1], start[1], rtol=0, atol=0)  # the unseen class did not move


def test_model_card_prior_reports_each_class_scales(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """`python -m training.model_card prior`: the prior's weights per scale and its mean scale in
    cells and km, per class and lead; a model without a prior is a one-line error."""
    import json

    from training.checkpoint import save_checkpoint
    from training.model_card import main

    cfg = ModelConfig(n_inputs=3, n_leads=2, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4, lightning=False,
                      probability_thresholds=[1.0], prior_levels=3, prior_classes_m=[2000.0, 240.0])
    net = EncoderForecaster(cfg)
    with torch.no_grad():
        net.prior_logits.zero_()
        net.prior_logits[0, 0, 0, 0] = 50.0  # 2 km, 5 min: all on 1 cell
        net.prior_logits[1, 0, 0, 2] = 50.0  # 240 m, 5 min: all on 4 cells
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"model_config": cfg.model_dump(), "state_dict": net.state_dict()})
    assert main(["prior", str(path), "--out", str(tmp_path / "p.json")]) == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    sharp, wide = doc["classes"]["2000 m"]["5"]["1"], doc["classes"]["240 m"]["5"]["1"]
    assert sharp["mean_scale_cells"] == 1.0 and sharp["mean_scale_km"] == 2.0 and sharp["weights_by_scale_cells"]["1"] == 1.0
    assert wide["mean_scale_cells"] == 4.0 and wide["mean_scale_km"] == 0.96
    assert doc["classes"]["2000 m"]["10"]["1"]["mean_scale_cells"] == 2.0  # uniform weights over 1, 2, 4 cells
    assert "2000 m   5 min  1 mm/h   1.00 cells (2.00 km)" in capsys.readouterr().out
    bare = ModelConfig(n_inputs=3, n_leads=2, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4, lightning=False, probability_thresholds=[1.0])
    save_checkpoint(tmp_path / "bare.pt", {"model_config": bare.model_dump(), "state_dict": EncoderForecaster(bare).state_dict()})
    assert main(["prior", str(tmp_path / "bare.pt")]) == 2
    assert "no learned neighbourhood prior" in capsys.readouterr().err


def test_prior_only_trains_the_prior_and_leaves_the_network_at_its_start(tiny_store, splits, guide_cache: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """``train.prior_only``: the prior's parameters learn, every network weight is bit-identical
    to the seeded initialisation (no gradient step, no weight decay); models the ablation
    cannot mean anything for, and fine-tuning, are refused with the reason."""
    o = copy.deepcopy(TINY_OPTIONS)
    o["model"].update(probability_thresholds=[1.0, 5.0], lightning=False, prior_levels=3, residual_zero_init=True, advection="residual")
    o["train"].update(epochs=1, cache_dir=str(guide_cache), prior_only=True, weight_decay=0.1)
    ckpt = read_checkpoint(run_fit(tiny_store, splits, o, tmp_path / "run"))
    cfg = ModelConfig.model_validate(ckpt["model_config"])
    seed_everything(int(ckpt.get("seed", 0)))  # the run seeds torch before building its network
    start = EncoderForecaster(cfg).state_dict()
    trained = ckpt["state_dict"]
    assert (trained["prior_logits"] - start["prior_logits"]).abs().max() > 1e-3
    frozen = [k for k in start if k not in ("prior_logits", "prob_scale")]
    assert frozen
    for k in frozen:
        torch.testing.assert_close(trained[k], start[k], rtol=0, atol=0, msg=k)
    with pytest.raises(ValueError, match="residual_zero_init = true"):
        check_compatible(cfg.model_copy(update={"residual_zero_init": False}), TrainOptions(prior_only=True))
    with pytest.raises(ValueError, match="prior_levels > 0"):
        check_compatible(cfg.model_copy(update={"prior_levels": 0}), TrainOptions(prior_only=True))
    with pytest.raises(ValueError, match="cannot start from init_checkpoint"):
        TrainOptions(prior_only=True, init_checkpoint="x.pt")
