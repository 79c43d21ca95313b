"""Tiny training settings shared by the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

START = pd.Timestamp("2024-06-01T12:00")
N_FRAMES = 44

#: a network small enough to train on CPU in seconds
TINY_OPTIONS: dict[str, Any] = {
    "model": {"n_inputs": 3, "n_leads": 4, "channels": [6, 8], "kernels": [3, 3], "strides": [2, 2], "stem_channels": 4, "advection": "residual"},
    "train": {"epochs": 2, "batch_size": 4, "lr": 3e-3, "crop_size": 32, "val_crop_size": 32, "min_wet_fraction": 0.01, "samples_per_epoch": 8, "patience": 10, "progress": False},
}


def run_fit(store, splits, options: dict[str, Any], out_dir: Path, **kw: Any) -> Path:  # noqa: ANN001
    from training.api import fit

    return fit(options, store, splits[0], splits[1], seed=kw.pop("seed", 0), device="cpu", out_dir=out_dir, **kw)
