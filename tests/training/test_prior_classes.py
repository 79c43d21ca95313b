"""Training with one neighbourhood prior per resolution class (``model.prior_classes_m``)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from train_helpers import TINY_OPTIONS, run_fit

from nowcast.models.convlstm import read_checkpoint
from nowcast.models.network import EncoderForecaster, ModelConfig


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
