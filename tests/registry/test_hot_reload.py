"""Hot reload: the running service switches to a newly promoted champion without a restart.

A real uvicorn server on loopback runs the app with its inference loop; an ingest thread adds
frames (so forecasts keep being made), two client threads hammer /v1/status and /v1/point, and
the test promotes a new version, then a broken one. Every response must be 200, the served
version must change, forecasts must carry the registry version, and the broken promotion must
leave the previous champion serving with an alert in status and metrics.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from nowcast import dims
from nowcast.model_registry import ModelRegistry

T0 = pd.Timestamp("2026-06-01T12:00")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _checkpoint(path: Path, shift: tuple[int, int]) -> Path:
    path.write_text(json.dumps({"shifts": [shift] * 15, "cadence_minutes": 5}))
    return path


def _wait(cond, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_service_switches_champion_under_load(tmp_path: Path) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    from nowcast.forecast_store import ForecastStore
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore
    from service.app import create_app
    from service.inference import InferenceLoop
    from service.settings import ServiceSettings

    grid = SyntheticRadar.default_grid(nx=32, ny=32, resolution=8000.0)
    radar = SyntheticRadar(grid, seed=5, wet_fraction=0.3)
    store = ObservationStore.create(str(tmp_path / "obs.zarr"), grid)

    def add(t: pd.Timestamp) -> None:
        ds = radar.frame(t)
        store.append(ds[dims.RAIN_RATE].expand_dims(dims.TIME), lightning=ds[dims.LIGHTNING].values)

    for t in pd.date_range(end=T0, periods=3, freq="5min"):
        add(t)
    reg = ModelRegistry.create(tmp_path / "models")
    reg.register(_checkpoint(tmp_path / "a.json", (0, 0)), model="test-shift", version_id="v1")
    reg.register(_checkpoint(tmp_path / "b.json", (1, 1)), model="test-shift", version_id="v2")
    reg.promote("v1")

    settings = ServiceSettings(
        store=str(tmp_path / "obs.zarr"),
        forecast_store=tmp_path / "fc.zarr",
        model="persistence",
        model_registry=str(tmp_path / "models"),
        model_registry_poll_seconds=0.05,
        poll_seconds=0.05,
        lead_minutes=[5, 10, 15, 30, 60],
    )
    loop = InferenceLoop(settings)
    loop.step()
    assert loop.model_status.version == "v1" and loop.model_status.active == "test-shift"
    app = create_app(settings, loop, start_inference=True)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    server_thread = threading.Thread(target=server.run, daemon=True)
    server_thread.start()
    base = f"http://127.0.0.1:{port}"
    _wait(lambda: server.started, 20, "uvicorn to start")

    lon0, lat0, lon1, lat1 = grid.bbox_lonlat()
    point = {"lat": (lat0 + lat1) / 2, "lon": (lon0 + lon1) / 2}
    stop = threading.Event()
    codes: list[int] = []
    versions: list[str] = []
    failures: list[str] = []

    def hammer(path: str, params: dict | None) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.get(path, params=params)
                except httpx.HTTPError as exc:  # a refused/dropped request is a failure too
                    failures.append(f"{path}: {exc!r}")
                    continue
                codes.append(r.status_code)
                if r.status_code != 200:
                    failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                elif path == "/v1/status":
                    versions.append(r.json()["model"]["version"])

    def ingest() -> None:
        t = T0
        while not stop.is_set():
            t += pd.Timedelta("5min")
            add(t)
            loop.wake()
            time.sleep(0.15)

    threads = [
        threading.Thread(target=hammer, args=("/v1/status", None)),
        threading.Thread(target=hammer, args=("/v1/point", point)),
        threading.Thread(target=ingest),
    ]
    for th in threads:
        th.start()
    fc = ForecastStore.open(tmp_path / "fc.zarr")
    try:
        # the status thread must have seen v1 before the promotion (under load the point
        # requests alone could pass 20 before its first answer, which then reports v2)
        _wait(lambda: len(codes) > 20 and bool(versions), 20, "requests and a status before the promotion")
        reg.promote("v2")
        _wait(lambda: versions and versions[-1] == "v2", 20, "/v1/status to report v2")
        _wait(lambda: (fc.latest().extra or {}).get("model_registry_version") == "v2", 20, "a forecast made by v2")
        n_before = len(codes)
        _wait(lambda: len(codes) > n_before + 20, 20, "requests after the switch")
        # a promoted model that cannot be loaded: v2 keeps serving, status and metrics alert
        bad = tmp_path / "bad.json"
        bad.write_text("not a checkpoint")
        reg.register(bad, model="test-shift", version_id="v3")
        reg.promote("v3", verify=False)
        with httpx.Client(base_url=base, timeout=10) as client:
            _wait(lambda: (client.get("/v1/status").json()["model"] or {}).get("alert"), 20, "an alert in /v1/status")
            status = client.get("/v1/status").json()
            metrics = client.get("/metrics").text
    finally:
        stop.set()
        for th in threads:
            th.join(10)
        server.should_exit = True
        server_thread.join(10)
    assert not failures, failures[:5]
    assert set(codes) == {200} and len(codes) > 40
    assert versions[0] == "v1" and "v2" in versions and "v3" not in versions
    i = versions.index("v2")
    assert set(versions[:i]) == {"v1"}  # one switch, no flapping
    assert status["model"]["version"] == "v2" and "v3" in status["model"]["alert"] and status["status"] == "degraded"
    assert any(line.startswith("nowcast_model_reload_failures") and line.rstrip().endswith(" 1.0") for line in metrics.splitlines()), [
        line for line in metrics.splitlines() if "reload" in line
    ]
    # every forecast run names the registry version that made it: v1 first, then v2
    made_by = [fc.run_info(t).extra.get("model_registry_version") for t in fc.init_times()]
    assert set(made_by) <= {"v1", "v2"} and made_by[-1] == "v2"
    assert made_by == sorted(made_by)  # never back to v1 after the switch
