"""Learned methods are (re)trained per split on the training blocks only, with the embargo kept.

A test-only nowcaster stands in for the ConvLSTM: ``fit`` is replaced by a fake that records
its arguments and writes a tiny checkpoint, so the plumbing is tested in a second.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nowcast.models import MODELS, forecast_dataset
from training.dap.plan import load_plan
from training.dap.runner import evaluate, prepare
from training.dap.verify import verify

NAME = "test-fake-learned"


class FakeLearned:
    """Persistence scaled by a factor read from its 'checkpoint' (a JSON file)."""

    name = NAME
    n_inputs = 2

    def __init__(self, checkpoint: str) -> None:
        self.factor = float(json.loads(Path(checkpoint).read_text())["factor"])

    @property
    def version(self) -> str:
        return f"x{self.factor:g}"

    def forecast(self, history: xr.Dataset, leads: Sequence[pd.Timedelta]) -> xr.Dataset:
        last = history["rain_rate"].values[-1] * self.factor
        rain = np.repeat(last[None], len(leads), axis=0)
        return forecast_dataset(rain, np.zeros_like(rain), history, leads, NAME, self.version)


@pytest.fixture
def fake_model():
    MODELS.register(NAME, FakeLearned, replace=True)
    yield NAME
    MODELS._items.pop(NAME, None)


def test_learned_method_trained_per_split_without_leakage(
    fake_model, plan_dict, tiny_store, tmp_path, monkeypatch
) -> None:
    import training.api

    calls: list[dict] = []

    def fake_fit(options, store, train_times, val_times, *, seed, device="auto", out_dir):
        calls.append(
            {
                "train": pd.DatetimeIndex(train_times),
                "val": pd.DatetimeIndex(val_times),
                "seed": seed,
                "options": options,
            }
        )
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        ckpt = out / "best.json"
        ckpt.write_text(json.dumps({"factor": 1.0 + 0.01 * (len(train_times) % 7)}))
        return ckpt

    monkeypatch.setattr(training.api, "fit", fake_fit)
    d = plan_dict(tiny_store)
    d["methods"] = [
        {"label": "persistence", "model": "persistence"},
        {
            "label": "learned",
            "model": fake_model,
            "train": True,
            "fit": {"model": {"n_inputs": 2}, "train": {"epochs": 1}},
        },
    ]
    d["splits"] = {**d["splits"], "folds": 3, "validation_fraction": 0.4}
    plan = load_plan(data=d)
    prepared = prepare(plan)
    out = evaluate(plan, tmp_path / "out", report=False)
    assert len(calls) == len(prepared.splits) == 3
    geo = prepared.geometry
    for split, call in zip(prepared.splits, calls, strict=True):
        assert call["options"] == {"model": {"n_inputs": 2}, "train": {"epochs": 1}}
        assert len(call["train"]) > 0 and len(call["val"]) > 0
        assert call["train"].intersection(call["val"]).empty
        test_lo = split.test_starts.min() - geo.before
        test_hi = split.test_starts.max() + geo.after
        for t in call["train"].append(call["val"]):  # no training window touches the test span
            assert t + geo.after < test_lo or t - geo.before > test_hi
    seeds = [c["seed"] for c in calls]
    assert len(set(seeds)) == 3
    recs = [json.loads(x) for x in out.ledger.read_text().splitlines()]
    split_recs = [r for r in recs if r["event"] == "split"]
    assert all(len(r["checkpoints"]["learned"]["sha256"]) == 64 for r in split_recs)
    res = verify(out.ledger, 2)
    assert res.identical, res.summary
