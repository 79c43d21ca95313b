"""Refitting the lightning calibration on other validation windows: weights untouched, map and provenance new."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
