"""A real ConvLSTM trained per split by training.api.fit inside the DAP harness; verify on CPU is exact."""

from __future__ import annotations

import pytest

from training.dap.plan import load_plan
from training.dap.runner import evaluate
from training.dap.verify import verify


@pytest.mark.slow
def test_convlstm_trained_per_split_and_verified(make_store, tmp_path) -> None:
    pytest.importorskip("torch")
    store = make_store(tmp_path / "s.zarr", n=32)
    plan = load_plan(
        data={
            "name": "conv",
            "data": {"store": str(store)},
            "methods": [
                {"label": "persistence", "model": "persistence"},
                {
                    "label": "convlstm",
                    "model": "convlstm",
                    "train": True,
                    "fit": {
                        "model": {
                            "n_inputs": 3,
                            "n_leads": 6,
                            "channels": [8],
                            "kernels": [3],
                            "strides": [2],
                            "advection": "none",
                            "lightning": False,
                        },
                        "train": {
                            "epochs": 1,
                            "batch_size": 4,
                            "crop_size": None,
                            "samples_per_epoch": 8,
                            "progress": False,
                            "min_wet_fraction": 0.0,
                        },
                    },
                },
            ],
            "scores": {
                "leads": [5, 15, 30],
                "thresholds": [0.5, 1, 5],
                "fss_thresholds": [1.0],
                "fss_scales": [1, 5],
            },
            "splits": {"folds": 3, "validation_fraction": 0.4},
            "run": {"workers": 0, "device": "cpu"},
        }
    )
    out = evaluate(plan, tmp_path / "out", report=False)
    assert out.results.sizes["split"] == 3
    assert (tmp_path / "out" / "checkpoints" / "split-000" / "convlstm").is_dir()
    res = verify(out.ledger, 1)
    assert res.identical, res.summary
