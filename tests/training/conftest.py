"""Fixtures of the training tests: a tiny seeded synthetic store and tiny training options."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from train_helpers import N_FRAMES, START, TINY_OPTIONS, run_fit


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory):  # -> ObservationStore
    """A 64x64 (2 km) store with 44 five-minute synthetic frames (seed 3), rain and lightning."""
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore

    src = SyntheticRadar(SyntheticRadar.default_grid(nx=64, ny=64), seed=3)
    url = str(tmp_path_factory.mktemp("store") / "obs.zarr")
    store = ObservationStore.create(url, src.grid, cadence=pd.Timedelta("5min"))
    for t in pd.date_range(START, periods=N_FRAMES, freq="5min"):
        f = src.frame(t)
        store.append(f["rain_rate"], lightning=f["lightning"])
    return ObservationStore.open(url)


@pytest.fixture(scope="session")
def splits(tiny_store) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:  # noqa: ANN001
    """Train: last input frames 3..24; val: 32..37 (no frame shared with training windows)."""
    t = tiny_store.times()
    return t[3:25], t[32:38]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny tensors: one intra-op thread is faster than several on a shared CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def guide_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("guides")


@pytest.fixture
def options(guide_cache: Path) -> dict[str, Any]:
    o = copy.deepcopy(TINY_OPTIONS)
    o["train"]["cache_dir"] = str(guide_cache)
    return o


@pytest.fixture(scope="session")
def run3(tiny_store, splits, guide_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    """An uninterrupted 3-epoch run; returns its output folder."""
    o = copy.deepcopy(TINY_OPTIONS)
    o["train"].update(epochs=3, cache_dir=str(guide_cache))
    out = tmp_path_factory.mktemp("run3")
    run_fit(tiny_store, splits, o, out)
    return out


@pytest.fixture(scope="session")
def run2(tiny_store, splits, guide_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    """A 2-epoch run with the same seed; returns its output folder."""
    o = copy.deepcopy(TINY_OPTIONS)
    o["train"].update(cache_dir=str(guide_cache))
    out = tmp_path_factory.mktemp("run2")
    run_fit(tiny_store, splits, o, out)
    return out
