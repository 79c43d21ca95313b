"""Fixtures for the DAP harness: a tiny seeded synthetic observation store and its plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

#: three 100-min events separated by 1-hour gaps (blocks for block = "gap")
EVENTS = (("2024-06-01T10:00", 20), ("2024-06-01T12:40", 20), ("2024-06-01T15:20", 20))


def build_store(
    path: Path, events=EVENTS, n: int = 40, seed: int = 3, holes: tuple[str, ...] = (), no_coverage_rows: int = 0
) -> Path:
    """A synthetic store on an ``n x n`` 2-km grid holding the frames of ``events``.

    ``holes``: frame times left out; ``no_coverage_rows``: top rows set to NaN (no radar).
    """
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore

    grid = SyntheticRadar.default_grid(nx=n, ny=n, resolution=2000.0)
    radar = SyntheticRadar(grid, seed=seed, wet_fraction=0.3, cell_rate=20.0, lightning_threshold=5.0)
    store = ObservationStore.create(str(path), grid, cadence=pd.Timedelta("5min"))
    skip = {pd.Timestamp(h) for h in holes}
    for start, count in events:
        for t in pd.date_range(start, periods=count, freq="5min"):
            if t in skip:
                continue
            ds = radar.frame(t)
            frame = ds["rain_rate"].expand_dims(time=[np.datetime64(t, "ns")])
            light = ds["lightning"].values.copy()
            if no_coverage_rows:
                frame = frame.copy()
                frame.values[:, :no_coverage_rows] = np.nan
                light[:no_coverage_rows] = np.nan
            store.append(frame, lightning=light)
    return path


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("dap") / "tiny.zarr")


def smoke_plan(store: Path, **over) -> dict:
    """A small plan dict: persistence vs extrapolation, 2 folds x 1 repetition, 3 leads."""
    plan = {
        "name": "test-smoke",
        "data": {"store": str(store)},
        "methods": [
            {"label": "persistence", "model": "persistence"},
            {"label": "extrapolation", "model": "extrapolation", "options": {"n_inputs": 3}},
        ],
        "scores": {"leads": [5, 15, 30], "thresholds": [0.5, 1, 5], "fss_thresholds": [1.0], "fss_scales": [1, 5]},
        "splits": {"block": "gap", "gap": "30min", "folds": 2, "repetitions": 1},
        "seed": 7,
        "run": {"workers": 0},
    }
    for k, v in over.items():
        plan[k] = v
    return plan


@pytest.fixture
def make_store():
    """The :func:`build_store` helper (test modules cannot import conftest)."""
    return build_store


@pytest.fixture
def plan_dict():
    """The :func:`smoke_plan` helper."""
    return smoke_plan


@pytest.fixture(scope="module")
def smoke_plan_module():
    """:func:`smoke_plan` for module-scoped fixtures."""
    return smoke_plan
