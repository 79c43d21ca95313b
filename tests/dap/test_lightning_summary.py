"""Lightning targets from a results document: CSI gain, reliability error on populated bins, BSS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.dap.lightning import lightning_summary, write_summary


def _doc(csi: list[list[float]], count: np.ndarray, forecast: np.ndarray, observed: np.ndarray) -> dict:
    methods = ["persistence", "convlstm"]
    leads = [5.0, 30.0]
    n_bins = count.shape[-1]

    def var(a) -> dict:  # noqa: ANN001
        return {"data": np.asarray(a).tolist()}

    return {
        "coords": {"method": {"data": methods}, "lead_time": {"data": leads}, "prob_bin": {"data": ((np.arange(n_bins) + 0.5) / n_bins).tolist()}},
        "attrs": {"plan_name": "p", "plan_hash": "h", "lightning_occurrence": 1.0, "lightning_probability_threshold": 0.2},
        "data_vars": {
            "lightning_csi_pooled": var(csi),
            "bss_pooled": var([[-0.5, -0.8], [0.3, 0.1]]),
            "brier_pooled": var([[0.01, 0.02], [0.004, 0.006]]),
            "reliability_count": var(count),
            "reliability_forecast": var(forecast),
            "reliability_observed": var(observed),
            "lightning_base_rate": var([[0.01, 0.01], [0.01, 0.01]]),
        },
    }


def _reliability() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = np.zeros((2, 2, 10))
    count[:, :, 0] = 9_000
    count[:, :, 1] = 950
    count[:, :, 9] = 50  # 0.5 % of the cases: not held to the target
    forecast = np.zeros((2, 2, 10))
    observed = np.zeros((2, 2, 10))
    forecast[:, :, 0], observed[:, :, 0] = 0.01, 0.012
    forecast[:, :, 1], observed[:, :, 1] = 0.15, 0.13
    forecast[:, 1, 1], observed[:, 1, 1] = 0.15, 0.19  # lead 30: error 0.04 in a populated bin
    forecast[:, :, 9], observed[:, :, 9] = 0.95, 0.5
    return count, forecast, observed


def test_targets_from_pooled_scores(tmp_path: Path) -> None:
    count, forecast, observed = _reliability()
    doc = _doc([[0.10, 0.04], [0.20, 0.08]], count, forecast, observed)
    s = lightning_summary(doc)
    gain = s["targets"]["csi_gain_at_lead"]
    assert gain["model"] == 0.08 and gain["baseline"] == 0.04
    assert gain["gain"] == pytest.approx(1.0) and gain["met"] is True
    rel = s["targets"]["max_reliability_error"]
    assert rel["value"] == pytest.approx(0.04) and rel["met"] is False  # the thin 0.9-1 bin is ignored
    assert {tuple(r["bin"]) for r in rel["bins"]} == {(0.0, 0.1), (0.1, 0.2)}
    assert s["bss"]["convlstm"] == [0.3, 0.1]
    (tmp_path / "results.json").write_text(json.dumps(doc))
    out = write_summary(tmp_path)
    assert json.loads(out.read_text())["targets"]["csi_gain_at_lead"]["met"] is True


def test_gain_below_target_and_zero_baseline() -> None:
    count, forecast, observed = _reliability()
    s = lightning_summary(_doc([[0.1, 0.05], [0.1, 0.08]], count, forecast, observed))
    assert s["targets"]["csi_gain_at_lead"]["gain"] == pytest.approx(0.6) and s["targets"]["csi_gain_at_lead"]["met"] is False
    zero = lightning_summary(_doc([[0.1, 0.0], [0.1, 0.02]], count, forecast, observed))["targets"]["csi_gain_at_lead"]
    assert zero["gain"] is None and zero["met"] is True
    both = lightning_summary(_doc([[0.1, 0.0], [0.1, 0.0]], count, forecast, observed))["targets"]["csi_gain_at_lead"]
    assert both["met"] is False
    with pytest.raises(ValueError, match="not in the results"):
        lightning_summary(_doc([[0.1, 0.0], [0.1, 0.0]], count, forecast, observed), model="sprog")
