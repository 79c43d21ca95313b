"""The observation-store protocol: the store and the DDP stand-in both satisfy it, and the
stand-in reads exactly what the store reads (it opens the store lazily, after pickling)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd

from nowcast import dims
from nowcast.grid import Grid
from nowcast.store import ObservationStore, ObservationStoreLike
from training.ddp import _StoreByUrl

T0 = pd.Timestamp("2024-03-01 12:00")
STEP = pd.Timedelta("5min")


def _store(tmp_path) -> ObservationStore:
    grid = Grid.from_bounds("EPSG:3035", 4_000_000, 2_500_000, 4_016_000, 2_512_000, 1000)
    s = ObservationStore.create(str(tmp_path / "obs.zarr"), grid)
    for i in range(3):
        s.append(dims.make_frames(np.full(grid.shape, float(i), np.float32), T0 + i * STEP, grid.x, grid.y, grid.crs_wkt))
    return s


def test_store_and_lazy_stand_in_satisfy_the_protocol(tmp_path) -> None:
    store = _store(tmp_path)
    assert isinstance(store, ObservationStoreLike)
    lazy = pickle.loads(pickle.dumps(_StoreByUrl(store.url)))
    assert lazy._store is None, "only the URL travels to a worker"
    assert isinstance(lazy, ObservationStoreLike)
    assert lazy.url == store.url and lazy.grid == store.grid and lazy.cadence == store.cadence
    assert lazy.version == store.version and lazy.last_complete() == store.last_complete()
    assert lazy.storage_options == ObservationStore.open(store.url).storage_options
    assert lazy.times().equals(store.times()) and lazy.has(T0 + STEP) and not lazy.has(T0 + 5 * STEP)
    assert lazy.window(T0 + 2 * STEP, 3, rows=slice(0, 4)).equals(store.window(T0 + 2 * STEP, 3, rows=slice(0, 4)))
    times = [T0 + 2 * STEP, T0]
    assert lazy.read_times(times).equals(store.read_times(times))


def test_forecast_store_satisfies_the_reader_protocol(tmp_path) -> None:
    """The API reads forecasts through ForecastStoreLike; the store implements every member."""
    from nowcast.forecast_store import ForecastStore, ForecastStoreLike

    grid = Grid.from_bounds("EPSG:3035", 4_000_000, 2_500_000, 4_016_000, 2_512_000, 1000)
    fc = ForecastStore.create(str(tmp_path / "fc"), grid)
    assert isinstance(fc, ForecastStoreLike)
    members = {n for n in dir(ForecastStoreLike) if not n.startswith("_")}
    assert members <= {n for n in dir(fc) if not n.startswith("_")}
    assert fc.latest() is None and fc.version == "none:0" and len(fc.init_times()) == 0
    assert not isinstance(object(), ForecastStoreLike)
