"""Paired comparison of two event-DAP runs (training.dap.compare)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from training.dap.compare import ComparisonError, combined_counts, compare, main

METHODS = ["convlstm", "extrapolation", "persistence", "sprog"]
EVENTS = ["e1", "e2", "e3", "e4", "e5"]


def _counts(seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    shape = (len(METHODS), len(EVENTS), 3, 2)
    data = {c: (("method", "event", "step", "threshold"), rng.integers(50, 500, shape)) for c in ("hits", "misses", "false_alarms", "correct_negatives")}
    ds = xr.Dataset(data, coords={"method": METHODS, "event": EVENTS, "step": [1, 2, 3], "threshold": [1.0, 5.0]})
    return ds.assign_coords(lead_minutes=(("event", "step"), np.tile([5.0, 10.0, 15.0], (len(EVENTS), 1))))


def _run(root: Path, name: str, counts: xr.Dataset) -> Path:
    d = root / name
    d.mkdir()
    counts.to_netcdf(d / "results.nc")
    held = counts["event"].values.tolist()  # the run's events, by class as its plan would list them
    classes = {c: {"events": [e for e in evs if e in held]} for c, evs in (("2km", EVENTS[:3]), ("240m", EVENTS[3:]))}
    summary = {"minutes": [5, 10, 15], "thresholds": [1.0, 5.0], "classes": {c: v for c, v in classes.items() if v["events"]}}
    (d / "results.json").write_text(json.dumps(summary))
    return d


def test_paired_difference_follows_the_counts_and_intervals_cover_it(tmp_path: Path) -> None:
    base = _counts(0)
    hits, misses = base["hits"].values.copy(), base["misses"].values.copy()
    moved = misses[0] // 2  # the ConvLSTM's (method 0) misses: half of them become hits
    hits[0] += moved
    misses[0] -= moved
    better = base.copy(data={**{k: v.values for k, v in base.data_vars.items()}, "hits": hits, "misses": misses})
    a, b = _run(tmp_path, "gpu", better), _run(tmp_path, "cpu", base)
    out = compare(a, b, bootstrap=200)
    for cls in ("2km", "240m"):
        sc, ci = out["classes"][cls]["scores"], out["classes"][cls]["intervals"]
        diff = np.asarray(sc["gpu"]["csi"]) - np.asarray(sc["cpu"]["csi"])
        assert (diff > 0).all()
        lo, hi = np.asarray(ci["csi:gpu-cpu"]["lo"]), np.asarray(ci["csi:gpu-cpu"]["hi"])
        assert (lo <= diff + 1e-12).all() and (diff <= hi + 1e-12).all() and (lo > 0).all()
        assert "mcc:gpu-sprog" in ci and sc["sprog"] == out["classes"][cls]["scores"]["sprog"]
    assert main([str(a), str(b), "--bootstrap", "100"]) == 0
    text = (a / "comparison-cpu.md").read_text()
    assert "| gpu - cpu |" in text and "| gpu - sprog |" in text
    same = compare(b, _run(tmp_path, "cpu2", base), bootstrap=100)["classes"]["2km"]["intervals"]["csi:cpu-cpu2"]
    assert np.allclose(same["lo"], 0) and np.allclose(same["hi"], 0)  # identical models: no difference at all


def test_runs_on_other_start_times_are_refused(tmp_path: Path) -> None:
    base = _counts(0)
    hits = base["hits"].values.copy()
    hits[METHODS.index("sprog"), 1] += 1  # S-PROG scored something else on e2
    other = base.copy(data={**{k: v.values for k, v in base.data_vars.items()}, "hits": hits})
    with pytest.raises(ComparisonError, match="start times"):
        combined_counts(other, base, "a", "b")
    kept = compare(_run(tmp_path, "c", base), _run(tmp_path, "d", base), bootstrap=100, exclude=["e1", "e4", "e5"])
    assert kept["classes"]["2km"]["events"] == ["e2", "e3"] and "240m" not in kept["classes"]
    with pytest.raises(ComparisonError, match="unknown events"):
        compare(tmp_path / "c", tmp_path / "d", bootstrap=100, exclude=["zz"])
    with pytest.raises(ComparisonError, match="b lacks events of a"):
        combined_counts(base, base.sel(event=EVENTS[:4]), "a", "b")
    # A scored fewer events (e.g. its plan left a class out): compared on A's events only
    sub = compare(_run(tmp_path, "sub", base.sel(event=EVENTS[:4])), _run(tmp_path, "full", base), bootstrap=100)
    assert sub["not_in_a"] == EVENTS[4:] and sorted(e for c in sub["classes"].values() for e in c["events"]) == EVENTS[:4]
    a, b = _run(tmp_path, "a", other), _run(tmp_path, "b", base)
    assert main([str(a), str(b)]) == 2 and not (a / "comparison-b.json").exists()


def test_one_repetition_of_a_repeated_run_can_be_compared(tmp_path: Path) -> None:
    base = _counts(0)
    rep = base.sel({"method": ["convlstm"]}).assign_coords(method=["convlstm-r0"])
    # run A: a repeated plan whose pooled ConvLSTM differs, but whose repetition 0 is run B's model
    pooled = base.sel({"method": ["convlstm"]}).copy(deep=True)
    pooled["hits"] += 7
    rest = base.sel({"method": [m for m in METHODS if m != "convlstm"]})
    repeated = xr.concat([pooled, rep, rest], dim="method", data_vars="all", coords="minimal", compat="override")
    a, b = _run(tmp_path, "rep", repeated), _run(tmp_path, "single", base)
    out = compare(a, b, bootstrap=100, method_a="convlstm-r0")
    ci = out["classes"]["2km"]["intervals"]["csi:rep-convlstm-r0-single"]
    assert np.allclose(ci["lo"], 0) and np.allclose(ci["hi"], 0)  # repetition 0 reproduces run B exactly
    pooled_ci = compare(a, b, bootstrap=100)["classes"]["2km"]["intervals"]["csi:rep-single"]
    assert not np.allclose(pooled_ci["hi"], 0)
    assert main([str(a), str(b), "--method-a", "convlstm-r0", "--bootstrap", "100", "--name", "r0"]) == 0
    assert "| rep-convlstm-r0 - single |" in (a / "r0.md").read_text()
    with pytest.raises(ComparisonError, match="no method 'convlstm-r5'"):
        compare(a, b, bootstrap=100, method_a="convlstm-r5")
