"""Fixtures of the service tests: a small seeded observation store, an inference loop, the app."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
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
        "refresh_wait_s": 60.0,  # deterministic: a request after a write waits for the new snapshot
        "stamp_reuse_s": 0.0,  # deterministic: every request checks the change stamps
        **overrides,
    }
    settings = ServiceSettings(**options)
    loop = InferenceLoop(settings)
    loop.step()
    app = create_app(settings, loop)
    client = TestClient(app).__enter__()  # keep one event-loop portal for all requests
    return ServiceEnv(settings, loop, app, client, store_path, writer)


@pytest.fixture
def env(tmp_path: Path) -> ServiceEnv:
    e = make_env(tmp_path)
    yield e
    e.client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory: pytest.TempPathFactory) -> ServiceEnv:
    """One read-only environment per module (faster); tests must not add frames to it."""
    e = make_env(tmp_path_factory.mktemp("svc"))
    yield e
    e.client.__exit__(None, None, None)


# -- a live uvicorn server in a thread --------------------------------------------------


def free_port_number() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(app, port: int | None = None):  # noqa: ANN001, ANN201
    import httpx
    import uvicorn

    port = port or free_port_number()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if httpx.get(url + "/v1/status", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_server():  # noqa: ANN201
    """``with live_server(app) as url:`` runs ``app`` with uvicorn on a free loopback port."""
    return serve_in_thread


def make_forecast(grid: Grid, init: pd.Timestamp, leads=(5, 10, 15), seed: int = 0):  # noqa: ANN001, ANN201
    """A seeded random forecast Dataset (lead_time, y, x) in the model output format."""
    import xarray as xr

    from nowcast import dims
    from nowcast.models.base import forecast_dataset

    rng = np.random.default_rng(seed)
    hist = dims.attach_crs(xr.Dataset(coords={"time": [init.to_datetime64()], "y": grid.y, "x": grid.x}), grid.crs)
    shape = (len(leads), *grid.shape)
    return forecast_dataset(
        rng.gamma(0.5, 2.0, shape).astype("f4"), rng.random(shape).astype("f4"), hist,
        [pd.Timedelta(minutes=m) for m in leads], "test", "1",
    )


@pytest.fixture
def helpers():  # noqa: ANN201
    """Helper functions of this package's tests (grid, forecast and environment factories)."""

    class H:
        grid = staticmethod(small_grid)
        forecast = staticmethod(make_forecast)
        env = staticmethod(make_env)

    return H


@pytest.fixture
def free_port():  # noqa: ANN201
    """A function returning a free TCP port on loopback."""
    return free_port_number
