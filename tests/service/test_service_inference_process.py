"""Inference in its own process (``service.inference_process``): the API serves the child's
forecasts, the admin routes call it, its death is reported and it is restarted, stop leaves
no process behind, and the API process never imports the models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest

T0 = pd.Timestamp("2025-06-01T12:00")
KEY = {"X-API-Key": "s3cret"}


def _append(store: Any, times: pd.DatetimeIndex) -> None:
    from nowcast.sources.synthetic import SyntheticRadar

    radar = SyntheticRadar(grid=store.grid, seed=3, wet_fraction=0.3)
    for t in times:
        ds = radar.frame(t)
        store.append(ds["rain_rate"].expand_dims(time=[t.to_datetime64()]), lightning=ds["lightning"].values)


@pytest.fixture
def obs(tmp_path: Path, helpers: Any) -> Any:
    """An observation store with six frames ending at T0 (no forecast yet), open for appending."""
    from nowcast.store import ObservationStore

    store = ObservationStore.create(str(tmp_path / "obs.zarr"), helpers.grid())
    _append(store, pd.date_range(end=T0, periods=6, freq="5min"))
    return store


def _settings(tmp_path: Path, **overrides: Any) -> Any:
    from service.settings import ServiceSettings

    options: dict[str, Any] = {
        "store": str(tmp_path / "obs.zarr"),
        "forecast_store": str(tmp_path / "fc.zarr"),
        "model": "persistence",
        "api_key": "s3cret",
        "lead_minutes": [5, 10, 15],
        "poll_seconds": 0.2,
        "inference_threads": 1,
        **overrides,
    }
    return ServiceSettings(**options)


@contextmanager
def _app(settings: Any) -> Iterator[tuple[Any, Any]]:
    """(proxy, TestClient) of create_app with an inference process started by the lifespan."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.inference_process import InferenceProcess

    proxy = InferenceProcess(settings)
    with TestClient(create_app(settings, proxy, start_inference=True)) as client:
        yield proxy, client
    assert not proxy.alive()


def _until(what: Callable[[], Any], timeout: float, why: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {why}")


def _status(client: Any) -> dict:
    return client.get("/v1/status").json()


def _forecast_at(client: Any, t: pd.Timestamp) -> dict | None:
    body = _status(client)
    fc = body.get("forecast")
    return body if fc and fc["init_time"] == t.strftime("%Y-%m-%dT%H:%M:%SZ") else None


def test_child_forecasts_and_the_api_serves_them(tmp_path: Path, obs: Any) -> None:
    with _app(_settings(tmp_path)) as (proxy, client):
        pid = proxy.pid
        assert pid is not None and pid != os.getpid()
        assert pid in [p.pid for p in psutil.Process().children()]
        status = _until(lambda: _forecast_at(client, T0), 60, "the child's first forecast")
        assert status["model"]["active"] == "persistence" and status["model"]["inference_running"] is True
        assert status["forecast"]["model"] == "persistence"
        assert client.get("/v1/forecasts/latest").status_code == 200
        # a new frame: the child forecasts it, its events reach the parent's metrics listener
        _append(obs, pd.DatetimeIndex([T0 + pd.Timedelta("5min")]))
        _until(lambda: _forecast_at(client, T0 + pd.Timedelta("5min")), 60, "the forecast of a new frame")
        _until(lambda: 'nowcast_forecast_runs_total{outcome="ok"} 2.0' in client.get("/metrics").text, 10, "two ok runs in /metrics")
        assert 'model="persistence"' in client.get("/metrics").text  # set_model listener, fed by the child's events
        assert proxy.status.runs == 2
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_admin_routes_call_the_child(tmp_path: Path, obs: Any) -> None:
    with _app(_settings(tmp_path)) as (proxy, client):
        _until(lambda: _forecast_at(client, T0), 60, "the first forecast")
        loaded = proxy.model_status.loaded_at
        r = client.post("/v1/admin/reload-model", headers=KEY)
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is True and r.json()["model"]["active"] == "persistence"
        assert proxy.model_status.loaded_at > loaded  # loaded again in the child
        first = client.get("/v1/forecasts/latest").json()
        time.sleep(1.1)  # written_at is served to the second: the forced run must land in a later one
        r = client.post("/v1/admin/forecast", headers=KEY)
        assert r.status_code == 200, r.text
        assert r.json()["init_time"] == "2025-06-01T12:00:00Z"
        assert proxy.status.runs == 2
        again = client.get("/v1/forecasts/latest").json()
        assert again["init_time"] == first["init_time"] and again["written_at"] > first["written_at"]  # the forced run, served


def test_admin_call_timeout_is_503(tmp_path: Path, obs: Any) -> None:
    with _app(_settings(tmp_path, inference_rpc_timeout_s=0.001)) as (_proxy, client):
        _until(lambda: _forecast_at(client, T0), 60, "the first forecast")
        r = client.post("/v1/admin/forecast", headers=KEY)
        assert r.status_code == 503 and "did not answer step within" in r.json()["detail"]


def test_killed_child_is_reported(tmp_path: Path, obs: Any) -> None:
    with _app(_settings(tmp_path, inference_restart_seconds=600)) as (proxy, client):
        _until(lambda: _forecast_at(client, T0), 60, "the first forecast")
        pid = proxy.pid
        os.kill(pid, signal.SIGKILL)
        status = _until(lambda: (s := _status(client)) and not s["model"]["inference_running"] and s, 15, "the death in /v1/status")
        assert "inference process exited with code -9" in status["model"]["last_error"]
        assert status["status"] == "degraded"
        assert any("exited with code -9" in m for m in status["messages"])
        r = client.post("/v1/admin/forecast", headers=KEY)
        assert r.status_code == 503 and "not running" in r.json()["detail"]
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 15  # stop does not wait for the 600 s restart delay
    assert proxy.restarts == 0


def test_killed_child_is_restarted(tmp_path: Path, obs: Any) -> None:
    with _app(_settings(tmp_path, inference_restart_seconds=0.2)) as (proxy, client):
        _until(lambda: _forecast_at(client, T0), 60, "the first forecast")
        first = proxy.pid
        os.kill(first, signal.SIGKILL)
        _until(lambda: proxy.pid != first and proxy.alive() and proxy.status.running, 60, "a restarted child")
        assert proxy.restarts == 1
        status = _status(client)
        assert status["model"]["inference_running"] is True
        assert "exited with code -9" in status["model"]["last_error"] and "restarted" in status["model"]["last_error"]
        r = client.post("/v1/admin/forecast", headers=KEY)  # a forecast by the new child clears the note
        assert r.status_code == 200, r.text
        assert _status(client)["model"]["last_error"] is None
        second = proxy.pid
    assert not proxy.alive()
    assert all(p.pid not in (first, second) for p in psutil.Process().children(recursive=True))


def test_api_process_does_not_import_the_models(tmp_path: Path, obs: Any) -> None:
    """In a fresh interpreter: an app with an inference process (extrapolation: pysteps in the
    child) serves the child's forecast without importing pysteps or torch itself."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from fastapi.testclient import TestClient
        from service.app import create_app
        from service.inference_process import InferenceProcess
        from service.settings import ServiceSettings

        settings = ServiceSettings(store={str(tmp_path / "obs.zarr")!r}, forecast_store={str(tmp_path / "fc.zarr")!r},
                                   model="extrapolation", lead_minutes=[5, 10], poll_seconds=0.2)
        proxy = InferenceProcess(settings)
        with TestClient(create_app(settings, proxy, start_inference=True)) as client:
            deadline = time.time() + 90
            while time.time() < deadline and not client.get("/v1/status").json()["forecast"]:
                time.sleep(0.2)
            status = client.get("/v1/status").json()
            client.get("/v1/frames"); client.get("/v1/forecasts/latest")
        print("RESULT", status["forecast"] and status["forecast"]["model"],
              sorted(m for m in ("torch", "pysteps", "nowcast.models.convlstm") if m in sys.modules))
        """
    )
    env = {**os.environ, "PYSTEPS_SILENT_IMPORT": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2], env=env,
                         capture_output=True, text=True, timeout=180)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line is not None, out.stdout + out.stderr
    assert line == "RESULT extrapolation []", line
