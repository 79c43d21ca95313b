"""``python -m training.model_card compare``: how far a retrain is from the shipped checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _checkpoint(path: Path, seed: int, cuts: float, bump: float = 0.0) -> Path:
    import numpy as np
    import torch

    from nowcast.models.calibration import ThresholdCalibration
    from nowcast.models.network import EncoderForecaster, ModelConfig
    from training.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    cfg = ModelConfig(n_inputs=3, n_leads=2, channels=[4], kernels=[3], strides=[2], stem_channels=4, lightning=False, probability_thresholds=[1.0])
    state = EncoderForecaster(cfg).state_dict()
    if bump:
        name = next(k for k, v in state.items() if v.is_floating_point() and v.numel())
        state[name] = state[name] + bump
    cal = ThresholdCalibration((1.0,), np.full((2, 1), cuts))
    return save_checkpoint(path, {"model_config": cfg.model_dump(), "state_dict": state, "calibration": cal.to_dict(), "trainer": {"best_epoch": 3, "best_score": 0.5}})


def test_compare_reports_the_largest_weight_difference_and_the_cuts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.model_card import compare, main

    ref = _checkpoint(tmp_path / "ref.pt", seed=0, cuts=0.4)
    same = _checkpoint(tmp_path / "same.pt", seed=0, cuts=0.4)
    doc = compare(same, ref)
    assert doc["n_identical_tensors"] == doc["n_tensors"] > 0 and doc["max_abs_weight_difference"] == 0.0
    assert doc["calibration_equal"] and doc["calibration_max_abs_difference"] == 0.0 and doc["same_model_config"]
    near = _checkpoint(tmp_path / "near.pt", seed=0, cuts=0.45, bump=1e-3)
    doc = compare(near, ref)
    assert doc["n_identical_tensors"] == doc["n_tensors"] - 1
    assert doc["max_abs_weight_difference"] == pytest.approx(1e-3, rel=1e-3)
    assert not doc["calibration_equal"] and doc["calibration_max_abs_difference"] == pytest.approx(0.05)
    assert doc["a"]["best_epoch"] == 3 and doc["a"]["sha256"] != doc["b"]["sha256"]
    out = tmp_path / "res" / "compare.json"
    assert main(["compare", str(near), str(ref), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["max_abs_weight_difference_tensor"] == doc["max_abs_weight_difference_tensor"]
    capsys.readouterr()


def test_compare_refuses_different_networks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from training.checkpoint import save_checkpoint
    from training.model_card import main

    ref = _checkpoint(tmp_path / "ref.pt", seed=0, cuts=0.4)
    other = save_checkpoint(tmp_path / "other.pt", {"model_config": {}, "state_dict": {"w": torch.zeros(2)}})
    assert main(["compare", str(other), str(ref)]) == 2
    assert "different networks" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing.pt"), str(ref)]) == 2
