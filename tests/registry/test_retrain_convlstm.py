"""The full retrain cycle with the real trainer (``training.api.fit``, a tiny ConvLSTM on CPU).

Slow (a few minutes on 2 CPU cores): the fast variant with the tiny ``test-shift`` model is
tests/registry/test_retrain.py. Here the first challenger (properly trained) becomes champion,
and a challenger trained on time-shuffled frames is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from registry_helpers import retrain_settings

from nowcast import dims
from nowcast.model_registry import ModelRegistry
from training.retrain import RetrainConfig, run_retrain

MODEL = {"n_inputs": 4, "n_leads": 12, "channels": [8, 16], "kernels": [3, 3], "strides": [2, 2],
         "stem_channels": 4, "advection": "residual", "lightning": False}
TRAIN = {"epochs": 2, "batch_size": 4, "crop_size": None, "samples_per_epoch": 16, "progress": False,
         "amp": False, "patience": 2, "min_wet_fraction": 0.01}


def shuffled_store_fit(tmp: Path) -> Any:
    """A trainer that fits on a copy of the store whose training/validation frames are permuted in time."""
    from nowcast.store import ObservationStore
    from training.api import fit

    def trainer(options: dict, store: Any, train_times: pd.DatetimeIndex, val_times: pd.DatetimeIndex, **kw: Any) -> Path:
        n_in = int(options["model"]["n_inputs"])
        n_out = int(options["model"]["n_leads"])
        cad = store.cadence
        span = pd.date_range(train_times[0] - (n_in - 1) * cad, val_times[-1] + n_out * cad, freq=cad)
        span = span[[store.has(t) for t in span]]
        data = store.read_times(span)
        order = np.random.default_rng(0).permutation(len(span))
        copy = ObservationStore.create(str(tmp / "shuffled.zarr"), store.grid, cad)
        for i, t in enumerate(span):
            frame = data[dims.RAIN_RATE].isel({dims.TIME: [order[i]]}).assign_coords({dims.TIME: [t]})
            copy.append(frame, lightning=data[dims.LIGHTNING].values[order[i]])
        return fit(options, copy, train_times, val_times, **kw)

    return trainer


@pytest.mark.slow
def test_convlstm_retrain_cycle(synthetic_store: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    settings = retrain_settings(
        synthetic_store, str(tmp_path / "registry"), tmp_path, nowcaster="convlstm", trainer=None,
        model=MODEL, train=TRAIN, nowcaster_options={"device": "cpu"},
        evaluation={"baseline": "extrapolation", "first_champion": "always"},
    )
    cfg = RetrainConfig.model_validate(settings)
    first = run_retrain(cfg)
    assert first.decision == "promoted", first.reason
    reg = ModelRegistry(cfg.registry)
    m = reg.get(first.challenger).manifest
    assert m["model"] == "convlstm" and m["data"]["train_frames"]["n_frames"] == 48
    bad = run_retrain(cfg.model_copy(update={"warm_start": False}), trainer=shuffled_store_fit(tmp_path))
    assert bad.decision == "kept", bad.reason
    assert reg.status().champion == first.challenger
    assert bad.scores["challenger"]["csi"] < bad.scores["champion"]["csi"]
