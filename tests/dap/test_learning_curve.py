"""Learning curve over event-DAP runs with fewer training events (training.dap.learning_curve)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from training.dap.compare import ComparisonError
from training.dap.learning_curve import (
    learning_curve,
    log_linear_fit,
    main,
    parse_run,
    training_events,
)

METHODS = ["convlstm", "convlstm-r0", "persistence", "sprog"]
EVENTS = ["a1", "a2", "a3", "b1", "b2", "b3"]


def _counts(improve: float) -> xr.Dataset:
    """Counts where the ConvLSTM turns ``improve`` of S-PROG's misses into hits (same S-PROG every run)."""
    rng = np.random.default_rng(0)
    shape = (len(METHODS), len(EVENTS), 3, 2)
    data = {c: rng.integers(200, 500, shape) for c in ("hits", "misses", "false_alarms", "correct_negatives")}
    s = METHODS.index("sprog")
    for m in ("convlstm", "convlstm-r0"):
        i = METHODS.index(m)
        for c in data:
            data[c][i] = data[c][s]
        moved = (data["misses"][s] * improve).astype(int)
        data["hits"][i] += moved
        data["misses"][i] -= moved
    ds = xr.Dataset({c: (("method", "event", "step", "threshold"), v) for c, v in data.items()},
                    coords={"method": METHODS, "event": EVENTS, "step": [1, 2, 3], "threshold": [1.0, 5.0]})
    return ds.assign_coords(lead_minutes=(("event", "step"), np.tile([5.0, 10.0, 15.0], (len(EVENTS), 1))))


def _run(root: Path, name: str, counts: xr.Dataset, n_train: int) -> Path:
    """A run folder whose two folds of repetition 0 trained on ``n_train`` events per class and
    whose repetition 1 trained on all three (as in a real plan, training events are the other
    folds' held-out events)."""
    d = root / name
    d.mkdir()
    counts.to_netcdf(d / "results.nc")
    splits = [{"repetition": 0, "fold": f, "train": EVENTS[:n_train] + EVENTS[3 : 3 + n_train]} for f in range(2)]
    splits.append({"repetition": 1, "fold": 0, "train": EVENTS})
    summary = {"plan": name, "minutes": [5, 10, 15], "thresholds": [1.0, 5.0], "classes": {"2km": {"events": EVENTS[:3]}, "240m": {"events": EVENTS[3:]}}, "splits": splits}
    (d / "results.json").write_text(json.dumps(summary))
    return d


def test_training_events_count_each_class_per_fold_of_the_method() -> None:
    summary = {"plan": "p", "classes": {"2km": {"events": ["x", "y"]}, "240m": {"events": ["z"]}},
               "splits": [{"repetition": 0, "train": ["x"]}, {"repetition": 0, "train": ["x", "y", "z"]}, {"repetition": 1, "train": ["z"]}]}
    assert training_events(summary, "convlstm-r0") == {"2km": 1.5, "240m": 0.5}
    assert training_events(summary, "convlstm") == {"2km": 1.0, "240m": 2 / 3}
    with pytest.raises(ComparisonError, match="no split records"):
        training_events(summary, "convlstm-r4")
    assert parse_run("results/x:convlstm-r0") == (Path("results/x"), "convlstm-r0") and parse_run("results/x") == (Path("results/x"), "convlstm")


def test_log_linear_fit_recovers_the_gain_per_doubling_and_the_doublings_to_target() -> None:
    n = [1.0, 2.0, 4.0]
    diffs = np.stack([np.full((2, 1), 0.01 * np.log2(v) - 0.02) for v in n])  # +0.01 per doubling, 0.0 at n = 4
    fit = log_linear_fit(n, diffs, np.array([[0.05], [-0.01]]))
    assert np.allclose(fit["per_doubling"], 0.01)
    assert fit["doublings_to_target"] == [[5.0], [0.0]]  # 0.05 needs five more doublings; -0.01 is met already
    flat = log_linear_fit(n, np.zeros((3, 1, 1)), np.array([[0.05]]))
    assert flat["per_doubling"] == [[0.0]] and flat["doublings_to_target"] == [[None]]  # no growth: no estimate


def test_learning_curve_pairs_runs_on_the_same_start_times(tmp_path: Path) -> None:
    runs = [_run(tmp_path, "quarter", _counts(0.0), 1), _run(tmp_path, "half", _counts(0.1), 2), _run(tmp_path, "full", _counts(0.3), 3)]
    result = learning_curve([(runs[0], "convlstm-r0"), (runs[1], "convlstm-r0"), (runs[2], "convlstm-r0")], bootstrap=200)
    labels = ["quarter-convlstm-r0", "half-convlstm-r0", "full-convlstm-r0"]
    for cls in ("2km", "240m"):
        res = result["classes"][cls]
        assert res["training_events"] == dict(zip(labels, [1.0, 2.0, 3.0], strict=True))
        sc = res["scores"]
        csi = [np.asarray(sc[lab]["csi"]) for lab in labels]
        assert np.allclose(csi[0], sc["sprog"]["csi"]) and (csi[1] > csi[0]).all() and (csi[2] > csi[1]).all()
        assert res["largest"] == "full-convlstm-r0"
        d = res["intervals"]["csi:quarter-convlstm-r0-full-convlstm-r0"]
        assert (np.asarray(d["hi"]) < 0).all()  # fewer events, lower CSI, on every resample
        assert np.allclose(res["intervals"]["csi:quarter-convlstm-r0-sprog"]["lo"], 0.0)
        assert (np.asarray(res["fit"]["csi"]["per_doubling"]) > 0).all()
    assert main([f"{r}:convlstm-r0" for r in runs] + ["--out", str(tmp_path / "lc"), "--bootstrap", "100"]) == 0
    text = (tmp_path / "lc" / "learning-curve.md").read_text()
    assert "| half-convlstm-r0 - full-convlstm-r0 |" in text and "per doubling" in text
    assert (tmp_path / "lc" / "learning-curve.png").stat().st_size > 10_000


def test_learning_curve_refuses_other_start_times(tmp_path: Path) -> None:
    base = _counts(0.1)
    hits = base["hits"].values.copy()
    hits[METHODS.index("sprog"), 0] += 1
    other = base.copy(data={**{k: v.values for k, v in base.data_vars.items()}, "hits": hits})
    a, b = _run(tmp_path, "a", base, 2), _run(tmp_path, "b", other, 3)
    with pytest.raises(ComparisonError, match="start times"):
        learning_curve([(a, "convlstm"), (b, "convlstm")], bootstrap=100)
    with pytest.raises(ComparisonError, match="share a label"):
        learning_curve([(a, "convlstm"), (a, "convlstm")], bootstrap=100)
    with pytest.raises(ComparisonError, match="at least two"):
        learning_curve([(a, "convlstm")], bootstrap=100)
    assert main([str(a), str(b), "--out", str(tmp_path / "no")]) == 2 and not (tmp_path / "no").exists()
