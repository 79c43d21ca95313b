"""The 2 km composite benchmark (``benchmarks/skill_real_2km.py``): its recipe is the shipped
one, and the shipped model is flagged on days it was trained on."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest
from bench_scripts import load_script

REPO = Path(__file__).resolve().parents[1]


def test_the_2km_recipe_is_the_shipped_real_data_recipe() -> None:
    """Issue 11 was measured by training configs/train-real-2km.toml, which had kept the LK-only
    recipe after the shipped model moved to S-PROG's guide; the two must not drift apart again."""
    with open(REPO / "configs" / "train-real-2km.toml", "rb") as f:
        two_km = tomllib.load(f)
    from nowcast.models.weights import TRAIN_CONFIGS

    with open(REPO / TRAIN_CONFIGS["real"], "rb") as f:
        shipped = tomllib.load(f)
    assert two_km["model"] == shipped["model"]
    assert two_km["model"]["guide_sources"][0] == "sprog"
    differ = {k for k in set(two_km["train"]) | set(shipped["train"]) if two_km["train"].get(k) != shipped["train"].get(k)}
    assert differ <= {"progress"}, differ


@pytest.mark.parametrize(
    ("start", "expected"),
    [("2016-07-11T22:00", ["mch-20160711"]), ("2016-07-10T23:55", ["mch-20160711"]), ("2016-07-11T23:55", ["mch-20160711"]), ("2016-07-12T00:00", [])],
)
def test_shipped_model_is_flagged_on_days_it_was_trained_on(tmp_path: Path, start: str, expected: list[str]) -> None:
    """Three 5-minute frames from ``start``: flagged when any of them falls on an event's day."""
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore

    bench = load_script("skill_real_2km")
    src = SyntheticRadar(SyntheticRadar.default_grid(nx=16, ny=16), seed=1)
    store = ObservationStore.create(str(tmp_path / "obs.zarr"), src.grid, cadence=pd.Timedelta("5min"))
    for t in pd.date_range(pd.Timestamp(start, tz="UTC"), periods=3, freq="5min"):
        f = src.frame(t)
        store.append(f["rain_rate"], lightning=f["lightning"])
    card = {"data": {"mch-20160711": {"role": "train"}, "knmi-20100826": {"role": "train"}}}
    assert bench.seen_in_training(ObservationStore.open(str(tmp_path / "obs.zarr")), card) == expected
