"""Fixtures of the service tests: a small seeded observation store, an inference loop, the app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nowcast.grid import Grid

#: a 64 x 48 grid of 4 km cells in ETRS89-LAEA over the Alps (about 3 x 2 degrees)
GRID_ARGS = ("EPSG:3035", 4_200_000.0, 2_700_000.0, 4000.0, -4000.0, 64, 48)
T0 = pd.Timestamp("2025-06-01T12:00")
N_FRAMES = 6


def small_grid() -> Grid:
    return Grid.regular(*GRID_ARGS, name="test-alps")


def append_synthetic(store, times: pd.DatetimeIndex, seed: int = 3, nan_corner: bool = True) -> None:  # noqa: ANN001
    """Append seeded synthetic frames; the north-west 8 x 8 corner is left without coverage (NaN)."""
    from nowcast.sources.synthetic import SyntheticRadar

    radar = SyntheticRadar(grid=store.grid, seed=seed, wet_fraction=0.3)
    for t in times:
        ds = radar.frame(t)
        rain = ds["rain_rate"].copy()
        if nan_corner:
            rain.values[:8, :8] = np.nan
        store.append(rain.expand_dims(time=[t.to_datetime64()]), lightning=ds["lightning"].values)


@dataclass
class ServiceEnv:
    settings: object
    loop: object
    app: object
    client: object
    store_path: Path
    writer: object  # the observation store opened for appending

    def add_frame(self, t: pd.Timestamp) -> None:
        append_synthetic(self.writer, pd.DatetimeIndex([t]))


def make_env(tmp_path: Path, **overrides) -> ServiceEnv:  # noqa: ANN003
    from fastapi.testclient import TestClient

    from nowcast.store import ObservationStore
    from service.app import create_app
    from service.inference import InferenceLoop
    from service.settings import ServiceSettings

    store_path = tmp_path / "obs.zarr"
    writer = ObservationStore.create(str(store_path), small_grid())
    append_synthetic(writer, pd.date_range(end=T0, periods=N_FRAMES, freq="5min"))
    options = {
        "store": str(store_path),
        "forecast_store": tmp_path / "fc.zarr",
        "model": "persistence",
        "api_key": "s3cret",
        "lead_minutes": [5, 10, 15, 30, 60, 75],
        "cache_items": 64,
        **overrides,
    }
    settings = ServiceSettings(**options)
    loop = InferenceLoop(settings)
    loop.step()
    app = create_app(settings, loop)
    client = TestClient(app)
    return ServiceEnv(settings, loop, app, client, store_path, writer)


@pytest.fixture
def env(tmp_path: Path) -> ServiceEnv:
    e = make_env(tmp_path)
    yield e
    e.client.close()


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory: pytest.TempPathFactory) -> ServiceEnv:
    """One read-only environment per module (faster); tests must not add frames to it."""
    e = make_env(tmp_path_factory.mktemp("svc"))
    yield e
    e.client.close()
