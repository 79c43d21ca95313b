"""Refitting the lightning calibration on other validation windows: weights untouched, map and provenance new."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nowcast.models.convlstm import read_checkpoint
from training.recalibrate import lightning_histogram, recalibrate


def test_recalibration_refits_the_map_on_the_given_windows_only(run3: Path, tiny_store, guide_cache: Path, tmp_path: Path) -> None:  # noqa: ANN001
    other = tiny_store.times()[25:32]  # between the training and the validation windows
    out = recalibrate(run3 / "best.pt", tmp_path / "recal.pt", [(tiny_store.url, other)], guide_cache)
    old, new = read_checkpoint(run3 / "best.pt"), read_checkpoint(out)
    for k, v in old["state_dict"].items():
        assert np.array_equal(v.numpy(), new["state_dict"][k].numpy()), k
    ckpt = read_checkpoint(run3 / "best.pt")
    hist, n = lightning_histogram(ckpt, run3 / "best.pt", [(tiny_store.url, other)], guide_cache)
    assert n > 0 and new["lightning_calibration_data"]["n_windows"] == n
    assert new["lightning_calibration_data"]["cases"] == int(hist.positive.sum() + hist.negative.sum())
    expected = hist.fit().to_dict()
    assert new["lightning_calibration"]["x"] == expected["x"] and new["lightning_calibration"]["y"] == expected["y"]
    assert len(new["lightning_calibration"]["validation_csi_cuts"]["cut"]) == new["model_config"]["n_leads"]


def test_cuts_recalibration_gives_one_resolution_class_its_own_cuts(tiny_store, guide_cache: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """``--cuts-class``: the class's cuts are fitted on the given stores' full frames; the pooled
    cuts and the weights stay; the model card travels along; a store of another class is refused."""
    import json

    import torch

    from nowcast.models import create_nowcaster
    from nowcast.models.calibration import ThresholdCalibration
    from nowcast.models.network import EncoderForecaster, ModelConfig
    from training.checkpoint import save_checkpoint
    from training.recalibrate import exceedance_histogram, main, recalibrate_cuts

    torch.manual_seed(0)
    cfg = ModelConfig(n_inputs=3, n_leads=4, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4, lightning=False,
                      residual_zero_init=True, probability_thresholds=[1.0, 5.0], advection="residual")
    pooled = np.full((4, 2), 0.45)
    src = tmp_path / "model.pt"
    save_checkpoint(src, {"model_config": cfg.model_dump(), "state_dict": EncoderForecaster(cfg).state_dict(),
                          "train_config": {"min_wet_fraction": 0.001}, "calibration": ThresholdCalibration((1.0, 5.0), pooled).to_dict()})
    (tmp_path / "model.card.json").write_text(json.dumps({"model": "convlstm", "calibration": {}}))
    parts = [(tiny_store.url, tiny_store.times()[10:30])]
    out = recalibrate_cuts(src, tmp_path / "recal.pt", parts, guide_cache, 2000.0)
    old, new = read_checkpoint(src), read_checkpoint(out)
    for k, v in old["state_dict"].items():
        assert np.array_equal(v.numpy(), new["state_dict"][k].numpy()), k
    hist, n = exceedance_histogram(old, src, parts, guide_cache)
    cal = ThresholdCalibration.from_dict(new["calibration"])
    np.testing.assert_array_equal(cal.cuts, pooled)
    assert [c for c, _ in cal.classes] == [2000.0]
    np.testing.assert_array_equal(cal.classes[0][1], hist.optimal_cuts())
    assert n > 0 and new["calibration_data"]["n_windows"] == n and new["calibration_data"]["frames"] == "full"
    card = json.loads((tmp_path / "recal.card.json").read_text())
    assert card["calibration"] == new["calibration"] and card["calibration_data"]["source_sha256"] == new["calibration_data"]["source_sha256"]
    model = create_nowcaster("convlstm", checkpoint=out)
    np.testing.assert_array_equal(model.calibration.cuts_for(tiny_store.grid.cell_size_m), cal.classes[0][1])
    with pytest.raises(ValueError, match="not in the class of 240 m"):
        recalibrate_cuts(src, tmp_path / "bad.pt", parts, guide_cache, 240.0)
    assert main([str(src), "--out", str(tmp_path / "bad.pt"), "--cuts-class", "240", "--store", tiny_store.url, "--cache-dir", str(guide_cache)]) == 2
    assert not (tmp_path / "bad.pt").exists()


def test_single_store_training_refits_full_frame_cuts(tiny_store, splits, guide_cache: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """``train.full_frame_cuts_m`` on the one-store path (``fit``): the class's cuts of best.pt are
    those of the trained weights on the full frames of the validation period."""
    import copy

    from train_helpers import TINY_OPTIONS, run_fit

    from nowcast.models.calibration import ThresholdCalibration
    from training.recalibrate import exceedance_histogram

    o = copy.deepcopy(TINY_OPTIONS)
    o["model"].update(probability_thresholds=[1.0, 5.0], lightning=False)
    o["train"].update(epochs=1, cache_dir=str(guide_cache), full_frame_cuts_m=[tiny_store.grid.cell_size_m])
    best = run_fit(tiny_store, splits, o, tmp_path / "run")
    ckpt = read_checkpoint(best)
    cal = ThresholdCalibration.from_dict(ckpt["calibration"])
    assert [c for c, _ in cal.classes] == [tiny_store.grid.cell_size_m]
    hist, n = exceedance_histogram(ckpt, best, [(tiny_store.url, splits[1])], guide_cache)
    np.testing.assert_array_equal(cal.classes[0][1], hist.optimal_cuts())
    assert ckpt["calibration_data"]["n_windows"] == n > 0
    np.testing.assert_array_equal(cal.cuts, ThresholdCalibration.from_dict(read_checkpoint(tmp_path / "run" / "last.pt")["calibration"]).cuts)


def test_refitting_a_second_class_keeps_the_first_class_record(tiny_store, guide_cache: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """Two classes refitted one after the other (``full_frame_cuts_m`` with two sizes): both keep
    their cuts, and the first refit's data record is kept under ``other_classes``."""
    import torch

    from nowcast.models.calibration import ThresholdCalibration
    from nowcast.models.network import EncoderForecaster, ModelConfig
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore
    from training.checkpoint import save_checkpoint
    from training.recalibrate import recalibrate_cuts

    src = SyntheticRadar(SyntheticRadar.default_grid(nx=48, ny=48, resolution=8000.0), seed=5)
    coarse = ObservationStore.create(str(tmp_path / "coarse.zarr"), src.grid, cadence=pd.Timedelta("5min"))
    for t in tiny_store.times()[:20]:
        coarse.append(src.frame(t)["rain_rate"])
    torch.manual_seed(0)
    cfg = ModelConfig(n_inputs=3, n_leads=4, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4, lightning=False,
                      residual_zero_init=True, probability_thresholds=[1.0], advection="residual")
    ckpt = save_checkpoint(tmp_path / "m.pt", {"model_config": cfg.model_dump(), "state_dict": EncoderForecaster(cfg).state_dict(),
                                               "train_config": {"min_wet_fraction": 0.001}, "calibration": ThresholdCalibration((1.0,), np.full((4, 1), 0.45)).to_dict()})
    recalibrate_cuts(ckpt, ckpt, [(tiny_store.url, tiny_store.times()[10:30])], guide_cache, 2000.0)
    recalibrate_cuts(ckpt, ckpt, [(coarse.url, coarse.times())], guide_cache, 8000.0)
    new = read_checkpoint(ckpt)
    assert [c for c, _ in ThresholdCalibration.from_dict(new["calibration"]).classes] == [2000.0, 8000.0]
    data = new["calibration_data"]
    assert data["class_cell_size_m"] == 8000.0 and [r["class_cell_size_m"] for r in data["other_classes"]] == [2000.0]
    assert data["other_classes"][0]["parts"][0]["store"] == tiny_store.url
    recalibrate_cuts(ckpt, ckpt, [(tiny_store.url, tiny_store.times()[10:30])], guide_cache, 2000.0)  # the 2 km refit again: one record each
    data = read_checkpoint(ckpt)["calibration_data"]
    assert data["class_cell_size_m"] == 2000.0 and [r["class_cell_size_m"] for r in data["other_classes"]] == [8000.0]
