"""Inference loop, forecast store publication/retention, version-keyed caches, admin routes."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from nowcast.forecast_store import ForecastStore, ForecastStoreError

T1 = pd.Timestamp("2025-06-01T12:05")


def test_new_frame_gets_a_forecast_and_is_not_hidden_by_caches(env) -> None:  # noqa: ANN001
    c = env.client
    # warm every cache with the current latest frame
    tile_url = "/v1/tiles/rain/latest/7/67/45.png"
    old_tile = c.get(tile_url).content
    old_fc_tile = c.get("/v1/tiles/rain/latest+5/7/67/45.png").content
    assert c.get("/v1/frames").json()["observed"][-1]["key"] == "20250601T1200"
    point_old = c.get("/v1/point?lat=46.5&lon=10").json()
    assert c.get("/v1/status").json()["observations"]["last_frame"] == "2025-06-01T12:00:00Z"

    env.add_frame(T1)
    # the new observation is visible at once, before any forecast exists for it
    assert c.get("/v1/status").json()["observations"]["last_frame"] == "2025-06-01T12:05:00Z"
    assert c.get("/v1/frames").json()["observed"][-1]["key"] == "20250601T1205"
    new_tile = c.get(tile_url)
    assert new_tile.content == c.get("/v1/tiles/rain/20250601T1205/7/67/45.png").content
    assert new_tile.content != old_tile  # synthetic rain moved
    assert c.get("/v1/point?lat=46.5&lon=10").json()["observed"][-1]["time"] == "2025-06-01T12:05:00Z"
    assert point_old["observed"][-1]["time"] == "2025-06-01T12:00:00Z"

    info = env.loop.step()
    assert info is not None and info.init_time == T1
    assert env.loop.step() is None  # nothing new: no second run
    assert c.get("/v1/forecasts/latest").json()["init_time"] == "2025-06-01T12:05:00Z"
    assert c.get("/v1/tiles/rain/latest+5/7/67/45.png").content != old_fc_tile
    assert c.get("/v1/status").json()["forecast"]["init_time"] == "2025-06-01T12:05:00Z"
    metrics = c.get("/metrics").text
    assert "nowcast_frame_to_forecast_seconds_count 1.0" in metrics


def test_loop_thread_follows_the_store(env) -> None:  # noqa: ANN001
    env.loop.start()
    try:
        env.add_frame(T1)
        deadline = time.time() + 30
        while time.time() < deadline:
            fc = env.app.state.access.forecasts()
            if fc.has(T1):
                break
            time.sleep(0.2)
        assert fc.has(T1)
        assert env.loop.status.running
    finally:
        env.loop.stop()
    assert not env.loop.status.running


def test_forecast_store_readers_see_complete_runs_only(env) -> None:  # noqa: ANN001
    fc: ForecastStore = env.app.state.access.forecasts()
    run = fc.latest()
    assert run is not None
    # a run whose data exist but whose marker does not (writer interrupted) is invisible
    key = "20250601T1300"
    (fc.root / "runs" / key).mkdir()
    assert key not in fc.run_keys()
    assert env.client.get("/v1/forecasts/20250601T1300").status_code == 404
    # the marker is the last thing written
    marker = json.loads((fc.root / "complete" / f"{run.key}.json").read_text())
    assert marker["lead_minutes"] == [5, 10, 15, 30, 60, 75]


def test_retention_keeps_the_newest_runs(tmp_path, helpers) -> None:  # noqa: ANN001
    small_grid, make_forecast = helpers.grid, helpers.forecast
    fc = ForecastStore.create(tmp_path / "fc", small_grid())
    inits = pd.date_range("2025-06-01T10:00", periods=6, freq="5min")
    for t in inits:
        fc.write(make_forecast(small_grid(), t))
    assert fc.apply_retention(keep=4) == [t.strftime("%Y%m%dT%H%M%S") for t in inits[:2]]
    assert list(fc.init_times()) == list(inits[2:])
    assert not (fc.root / "runs" / inits[0].strftime("%Y%m%dT%H%M%S")).exists()
    removed = fc.apply_retention(max_age=pd.Timedelta("10min"))
    assert list(fc.init_times()) == list(inits[3:])
    assert len(removed) == 1
    with pytest.raises(ForecastStoreError, match="no complete forecast run"):
        fc.read_lead(inits[0], pd.Timedelta("5min"))
    # the newest run is never deleted
    fc.apply_retention(keep=1, max_age=pd.Timedelta(0))
    assert list(fc.init_times()) == [inits[-1]]


def test_replacing_a_run_keeps_it_readable_while_the_new_data_are_written(tmp_path, helpers, monkeypatch) -> None:  # noqa: ANN001
    """A re-forecast of the same init time (admin route) stages its data beside the old run: while
    the new data are written, readers still find the old run complete; then the new one is served
    and nothing staged is left behind."""
    import xarray as xr

    small_grid, make_forecast = helpers.grid, helpers.forecast
    fc = ForecastStore.create(tmp_path / "fc", small_grid())
    init = pd.Timestamp("2025-06-01T12:00")
    fc.write(make_forecast(small_grid(), init, seed=1))
    before = fc.latest()
    old = fc.read_lead(init, pd.Timedelta("5min"))
    reader = ForecastStore.open(tmp_path / "fc")
    during: list[object] = []
    to_zarr = xr.Dataset.to_zarr

    def watched(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        run = reader.latest()
        during.append(None if run is None else (run.written_at, np.array_equal(reader.read_lead(init, pd.Timedelta("5min")), old, equal_nan=True)))
        return to_zarr(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", watched)
    fc.write(make_forecast(small_grid(), init, seed=2))
    assert during == [(before.written_at, True)]  # the old run, complete, while the new data were written
    new = reader.read_lead(init, pd.Timedelta("5min"))
    assert not np.array_equal(new, old, equal_nan=True) and reader.latest().written_at > before.written_at
    assert [p.name for p in (tmp_path / "fc" / "runs").iterdir()] == [init.strftime("%Y%m%dT%H%M%S")]  # nothing staged or retired left


def test_forecast_store_round_trip_and_errors(tmp_path, helpers) -> None:  # noqa: ANN001
    small_grid, make_forecast = helpers.grid, helpers.forecast
    g = small_grid()
    fc = ForecastStore.create(tmp_path / "fc", g)
    f = make_forecast(g, pd.Timestamp("2025-06-01T10:00"))
    fc.write(f, compute_seconds=1.5)
    for i, lead in enumerate(pd.to_timedelta(f["lead_time"].values)):
        np.testing.assert_array_equal(fc.read_lead("2025-06-01T10:00", lead), f["rain_rate"].values[i])
        np.testing.assert_array_equal(
            fc.read_lead("2025-06-01T10:00", lead, "lightning_probability"), f["lightning_probability"].values[i]
        )
    ds = fc.dataset()
    assert ds["rain_rate"].dims == ("init_time", "lead_time", "y", "x")
    assert fc.run_info("2025-06-01T10:00").compute_seconds == 1.5
    with pytest.raises(ForecastStoreError, match="lead 0 days 00:07:00 not in run"):
        fc.read_lead("2025-06-01T10:00", pd.Timedelta("7min"))
    with pytest.raises(ForecastStoreError, match="already exists"):
        ForecastStore.create(tmp_path / "fc", g)
    with pytest.raises(ForecastStoreError, match="does not match the store grid"):
        fc.write(f.isel(x=slice(0, 10)))
    other = small_grid().__class__.regular("EPSG:3035", 0, 0, 1000, -1000, 10, 10)
    with pytest.raises(ForecastStoreError, match="differs from the observation grid"):
        ForecastStore.open_or_create(tmp_path / "fc", other)
    with pytest.raises(ForecastStoreError, match="not a forecasts store"):
        ForecastStore.open(tmp_path)


def test_model_fallback_is_reported(tmp_path, helpers) -> None:  # noqa: ANN001
    """A model that cannot be created (bad option / missing checkpoint) -> the fallback model, said in the status."""
    e = helpers.env(tmp_path, model="extrapolation", model_options={"oflow": "no-such-flow"}, fallback_model="persistence")
    try:
        st = e.client.get("/v1/status").json()
        assert st["model"]["fallback"] is True
        assert st["model"]["configured"] == "extrapolation"
        assert st["model"]["active"] == "persistence"
        assert "no-such-flow" in st["model"]["message"] and "'persistence'" in st["model"]["message"]
        assert st["forecast"]["model"] == "persistence"
        assert st["status"] == "degraded"
        assert any("could not be loaded" in m for m in st["messages"])
    finally:
        e.client.__exit__(None, None, None)


def test_a_median_ensemble_is_served_from_model_options(tmp_path, helpers) -> None:  # noqa: ANN001
    """model = "median-ensemble" with checkpoints in model_options: the loop serves the ensemble."""
    from nowcast.models.weights import default_checkpoint

    ckpt = str(default_checkpoint("synthetic"))
    e = helpers.env(tmp_path, model="median-ensemble", model_options={"checkpoints": [ckpt, ckpt, ckpt]})
    try:
        st = e.client.get("/v1/status").json()
        assert st["model"]["fallback"] is False and st["model"]["active"] == "median-ensemble"
        assert st["forecast"]["model"] == "median-ensemble"  # the latest run was made by the ensemble
    finally:
        e.client.__exit__(None, None, None)


def test_admin_routes_need_the_key(env) -> None:  # noqa: ANN001
    c = env.client
    fc = env.app.state.access.forecasts()
    before = fc.run_info("2025-06-01T12:00").written_at
    for headers in ({}, {"X-API-Key": "wrong"}):
        r = c.post("/v1/admin/forecast", headers=headers)
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
        assert c.post("/v1/admin/reload-model", headers=headers).status_code == 401
    assert fc.run_info("2025-06-01T12:00").written_at == before  # nothing changed
    model_before = env.loop._model
    assert env.loop._model is model_before

    r = c.post("/v1/admin/forecast", headers={"X-API-Key": "s3cret"})
    assert r.status_code == 200 and r.json()["init_time"] == "2025-06-01T12:00:00Z"
    assert fc.run_info("2025-06-01T12:00").written_at > before
    r = c.post("/v1/admin/reload-model", headers={"X-API-Key": "s3cret"})
    assert r.status_code == 200 and r.json()["model"]["active"] == "persistence"
    assert env.loop._model is not model_before


def test_admin_disabled_without_configured_key(tmp_path, helpers) -> None:  # noqa: ANN001
    e = helpers.env(tmp_path, api_key=None)
    try:
        r = e.client.post("/v1/admin/forecast", headers={"X-API-Key": ""})
        assert r.status_code == 401 and "disabled" in r.json()["detail"]
    finally:
        e.client.__exit__(None, None, None)
