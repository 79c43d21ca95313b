"""Split results -> one labelled ``xarray.Dataset``: per-split scores, intervals, paired comparison.

Dims: ``method``, ``lead_time`` (timedelta), ``threshold`` (mm/h), ``split`` and, for FSS,
``fss_threshold`` (mm/h) and ``scale`` (grid cells). Every score ``S`` with a ``split`` dim
has two companions without it:

- ``S_summary`` over ``stat`` = mean, lo, hi, n: the mean across splits and its
  ``interval`` (default 95 %) Student-t confidence interval (NaN with fewer than 2 splits);
- ``S_paired`` over ``paired`` = diff, lo, hi, wins, n: the per-split difference
  method - baseline, its mean and interval, and in how many splits the method beat the
  baseline (by the score's orientation: higher, lower, or closer to 1 for BIAS / 0 for ME).

Scores of one split are computed from that split's pooled tables; the reliability diagram
pools the splits of repetition 0 (each test case once). Attributes carry the plan hash.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.metrics import ScoreSuite

#: score -> orientation: "max" higher is better, "min" lower is better, or the target value
ORIENTATION: dict[str, str | float] = {
    "csi": "max",
    "pod": "max",
    "far": "min",
    "bias": 1.0,
    "hss": "max",
    "ets": "max",
    "mcc": "max",
    "fss": "max",
    "mae": "min",
    "rmse": "min",
    "me": 0.0,
    "lightning_csi": "max",
    "lightning_pod": "max",
    "lightning_far": "min",
    "lightning_mcc": "max",
    "lightning_hss": "max",
    "lightning_ets": "max",
    "lightning_bias": 1.0,
    "brier": "min",
    "bss": "max",
}
CATEGORICAL = ("csi", "pod", "far", "bias", "hss", "ets", "mcc")
CONTINUOUS = ("mae", "rmse", "me")
LIGHTNING = ("lightning_csi", "lightning_pod", "lightning_far", "lightning_mcc", "brier", "bss")


def _interval(
    values: np.ndarray, level: float, axis: int = -1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, lower, upper (Student-t interval of the mean) and n over ``axis``, NaN-aware."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    n = np.sum(np.isfinite(v), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(np.isfinite(v), v, 0.0).sum(axis=axis)
        mean = np.where(n > 0, s / np.maximum(n, 1), np.nan)
        dev = np.where(np.isfinite(v), v - np.expand_dims(mean, axis), 0.0)
        var = np.where(n > 1, (dev**2).sum(axis=axis) / np.maximum(n - 1, 1), np.nan)
        tq = np.where(n > 1, stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)), np.nan)
        half = tq * np.sqrt(var / np.maximum(n, 1))
    return mean, mean - half, mean + half, n.astype(np.float64)


def _wins(
    diff_sign: np.ndarray, method: np.ndarray, base: np.ndarray, orient: str | float
) -> np.ndarray:
    if orient == "max":
        won = method > base
    elif orient == "min":
        won = method < base
    else:
        won = np.abs(method - float(orient)) < np.abs(base - float(orient))
    return np.where(np.isfinite(diff_sign), won, False).sum(axis=-1).astype(np.float64)


def build_results(prepared: Any, split_results: list[dict[str, Any]]) -> xr.Dataset:
    """Assemble the results Dataset from ``run_split`` results (sorted by split)."""
    plan = prepared.plan
    labels = [m.label for m in plan.methods]
    leads = pd.to_timedelta([prepared.cadence * s for s in prepared.lead_steps])
    splits = [r["split"] for r in split_results]
    per: dict[str, list[np.ndarray]] = {}  # var -> [per split: (method, ...)]
    counts: dict[str, list[np.ndarray]] = {}
    pooled: dict[str, ScoreSuite] = {}
    for res in split_results:
        suites = {lab: ScoreSuite.from_dict(res["states"][lab]) for lab in labels}
        scores = {lab: s.compute() for lab, s in suites.items()}
        for name in scores[labels[0]]:
            if name.startswith("reliability_") or name == "base_rate":
                continue
            per.setdefault(name, []).append(np.stack([scores[lab][name] for lab in labels]))
        for name in ("hits", "misses", "false_alarms", "correct_negatives"):
            counts.setdefault(name, []).append(
                np.stack([getattr(suites[lab].rain, name) for lab in labels])
            )
        if res["repetition"] == 0:
            for lab, s in suites.items():
                if lab in pooled:
                    pooled[lab].merge(s)
                else:
                    pooled[lab] = s

    sc = plan.scores
    coords: dict[str, Any] = {
        "method": labels,
        dims.LEAD_TIME: leads.values,
        "threshold": np.asarray(sc.thresholds, dtype=np.float64),
        "fss_threshold": np.asarray(sc.fss_thresholds, dtype=np.float64),
        "scale": np.asarray(sc.fss_scales, dtype=np.int64),
        "split": np.asarray(splits, dtype=np.int64),
        "repetition": (
            "split",
            np.asarray([r["repetition"] for r in split_results], dtype=np.int64),
        ),
        "fold": ("split", np.asarray([r["fold"] for r in split_results], dtype=np.int64)),
        "stat": ["mean", "lo", "hi", "n"],
        "paired": ["diff", "lo", "hi", "wins", "n"],
    }
    data_vars: dict[str, Any] = {}

    def dims_of(name: str, arr: np.ndarray) -> tuple[str, ...]:
        if name in CATEGORICAL:
            return ("method", dims.LEAD_TIME, "threshold")
        if name == "fss":
            return ("method", dims.LEAD_TIME, "fss_threshold", "scale")
        return ("method", dims.LEAD_TIME)

    base_i = labels.index(plan.baseline_label)
    for name, parts in per.items():
        arr = np.stack(parts, axis=-1)  # (..., split)
        d = dims_of(name, arr) + ("split",)
        data_vars[name] = (
            d,
            arr,
            {
                "long_name": name.upper().replace("_", " "),
                "orientation": str(ORIENTATION.get(name, "")),
            },
        )
        mean, lo, hi, n = _interval(arr, sc.interval)
        data_vars[f"{name}_summary"] = (("stat",) + d[:-1], np.stack([mean, lo, hi, n]))
        diff = arr - arr[base_i : base_i + 1]
        dm, dlo, dhi, dn = _interval(diff, sc.interval)
        wins = _wins(
            diff,
            arr,
            np.broadcast_to(arr[base_i : base_i + 1], arr.shape),
            ORIENTATION.get(name, "max"),
        )
        data_vars[f"{name}_paired"] = (("paired",) + d[:-1], np.stack([dm, dlo, dhi, wins, dn]))
    for name, parts in counts.items():
        data_vars[name] = (
            ("method", dims.LEAD_TIME, "threshold", "split"),
            np.stack(parts, axis=-1),
        )
    if sc.lightning and pooled:
        rel = {lab: s.compute() for lab, s in pooled.items()}
        nb = sc.reliability_bins
        coords["prob_bin"] = (np.arange(nb) + 0.5) / nb
        for name in ("reliability_forecast", "reliability_observed", "reliability_count"):
            data_vars[name] = (
                ("method", dims.LEAD_TIME, "prob_bin"),
                np.stack([rel[lab][name] for lab in labels]),
            )
        data_vars["lightning_base_rate"] = (
            ("method", dims.LEAD_TIME),
            np.stack([rel[lab]["base_rate"] for lab in labels]),
        )
        # lightning scores of the tables pooled over the splits of the first repetition (every
        # test case once): the reference figures of a fixed model evaluated on held-out data
        for name in LIGHTNING:
            if all(name in rel[lab] for lab in labels):
                data_vars[f"{name}_pooled"] = (
                    ("method", dims.LEAD_TIME),
                    np.stack([np.asarray(rel[lab][name], dtype=np.float64) for lab in labels]),
                )

    ds = xr.Dataset(data_vars, coords=coords)
    ds["threshold"].attrs["units"] = dims.RAIN_RATE_UNITS
    ds["fss_threshold"].attrs["units"] = dims.RAIN_RATE_UNITS
    ds["scale"].attrs["units"] = "grid cells"
    ds.attrs.update(
        title=f"DAP evaluation {plan.name}",
        plan_name=plan.name,
        plan_hash=prepared.plan_hash,
        baseline=plan.baseline_label,
        interval=float(sc.interval),
        n_splits=len(splits),
        period=" .. ".join(prepared.store_info.get("period", [])),
        store=str(plan.data.store),
        lightning_occurrence=float(sc.lightning_occurrence),
        lightning_probability_threshold=float(sc.lightning_probability),
        data_fingerprints=json.dumps(
            {str(r["split"]): r["data_fingerprint"] for r in split_results}
        ),
        conventions="event: value >= threshold; NaN observations masked; scores from pooled tables per split",
    )
    return ds


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, float):
        return None if not math.isfinite(v) else v
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    return v


def results_to_json(ds: xr.Dataset) -> dict[str, Any]:
    """The Dataset as JSON: lead_time in minutes, NaN as null."""
    d = ds.assign_coords(
        {dims.LEAD_TIME: (ds[dims.LEAD_TIME].values / np.timedelta64(1, "m")).astype(float)}
    )
    d[dims.LEAD_TIME].attrs["units"] = "minutes"
    out = d.to_dict(data="list")
    return _jsonable(out)


def write_results(ds: xr.Dataset, out_dir: Path) -> tuple[Path, Path]:
    """``results.nc`` (netCDF4) and ``results.json`` under ``out_dir``."""
    nc = out_dir / "results.nc"
    js = out_dir / "results.json"
    ds.to_netcdf(nc)
    js.write_text(json.dumps(results_to_json(ds), indent=None, separators=(",", ":")))
    return nc, js
