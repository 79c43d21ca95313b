"""The forecasts store on S3-compatible storage (moto's server on loopback)."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nowcast import dims
from nowcast.forecast_store import ForecastStore, ForecastStoreError
from nowcast.grid import Grid
from nowcast.models.base import forecast_dataset

INIT = pd.Timestamp("2025-06-01T10:00")
LEADS = (5, 10, 15)


def small_grid() -> Grid:
    return Grid.regular("EPSG:3035", 4_000_000.0, 2_600_000.0, 2000.0, -2000.0, 20, 16)


def make_forecast(grid: Grid, init: pd.Timestamp, seed: int = 0) -> xr.Dataset:
    """A seeded random forecast Dataset (lead_time, y, x) in the model output format."""
    rng = np.random.default_rng(seed)
    hist = dims.attach_crs(xr.Dataset(coords={"time": [init.to_datetime64()], "y": grid.y, "x": grid.x}), grid.crs)
    shape = (len(LEADS), *grid.shape)
    return forecast_dataset(
        rng.gamma(0.5, 2.0, shape).astype("f4"), rng.random(shape).astype("f4"), hist,
        [pd.Timedelta(minutes=m) for m in LEADS], "test", "1",
    )


def _key(t: pd.Timestamp) -> str:
    return t.strftime("%Y%m%dT%H%M%S")


def test_runs_round_trip_on_s3(moto_s3, s3_bucket):
    url = f"s3://{s3_bucket}/fc/alps.zarr"
    grid = small_grid()
    fc = ForecastStore.create(url, grid, storage_options=moto_s3.options())
    assert fc.remote and fc.run_keys() == [] and fc.latest() is None
    inits = pd.date_range(INIT, periods=2, freq="5min")
    written = {t: make_forecast(grid, t, seed=i) for i, t in enumerate(inits)}
    for f in written.values():
        fc.write(f, compute_seconds=0.5)

    keys = moto_s3.keys(s3_bucket, "fc/alps.zarr/")
    assert "fc/alps.zarr/zarr.json" in keys
    assert f"fc/alps.zarr/complete/{_key(inits[0])}.json" in keys
    assert any(k.startswith(f"fc/alps.zarr/runs/{_key(inits[1])}/rain_rate/") for k in keys)

    reader = ForecastStore.open(url, storage_options=moto_s3.options())  # a fresh reader, as another process would
    assert reader.grid.same_as(grid)
    assert list(reader.init_times()) == list(inits)
    assert reader.latest().init_time == inits[-1] and reader.latest().compute_seconds == 0.5
    for t, f in written.items():
        for i, lead in enumerate(pd.to_timedelta(f[dims.LEAD_TIME].values)):
            np.testing.assert_array_equal(reader.read_lead(t, lead), f[dims.RAIN_RATE].values[i])
            np.testing.assert_array_equal(
                reader.read_lead(t, lead, dims.LIGHTNING_PROBABILITY), f[dims.LIGHTNING_PROBABILITY].values[i]
            )
    point = reader.read_point(inits[0], 3, 7)
    np.testing.assert_array_equal(point[dims.RAIN_RATE], written[inits[0]][dims.RAIN_RATE].values[:, 3, 7])
    ds = reader.dataset()
    assert ds[dims.RAIN_RATE].dims == (dims.INIT_TIME, dims.LEAD_TIME, dims.Y, dims.X)
    np.testing.assert_array_equal(ds[dims.RAIN_RATE].values[1], written[inits[1]][dims.RAIN_RATE].values)
    with pytest.raises(ForecastStoreError, match="lead 0 days 00:07:00 not in run"):
        reader.read_lead(inits[0], pd.Timedelta("7min"))
    with pytest.raises(ForecastStoreError, match="no complete forecast run"):
        reader.read_lead(INIT - pd.Timedelta("1h"), pd.Timedelta("5min"))

    # rewriting an init time replaces the run whole
    again = make_forecast(grid, inits[0], seed=99)
    fc.write(again)
    np.testing.assert_array_equal(
        ForecastStore.open(url, storage_options=moto_s3.options()).read_lead(inits[0], pd.Timedelta("5min")),
        again[dims.RAIN_RATE].values[0],
    )
    with pytest.raises(ForecastStoreError, match="already exists"):
        ForecastStore.create(url, grid, storage_options=moto_s3.options())
    other = Grid.regular("EPSG:3035", 0, 0, 1000, -1000, 10, 10)
    with pytest.raises(ForecastStoreError, match="differs from the observation grid"):
        ForecastStore.open_or_create(url, other, storage_options=moto_s3.options())
    assert ForecastStore.open_or_create(url, grid, storage_options=moto_s3.options()).version == fc.version


def test_options_from_environment_and_open_or_create(moto_s3, s3_bucket, monkeypatch):
    monkeypatch.setenv("NOWCAST_S3_ENDPOINT_URL", moto_s3.endpoint)
    monkeypatch.setenv("NOWCAST_S3_KEY", moto_s3.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret)
    monkeypatch.setenv("NOWCAST_S3_REGION", "us-east-1")
    url = f"s3://{s3_bucket}/env/fc.zarr"
    with pytest.raises(ForecastStoreError, match="not a forecasts store"):
        ForecastStore.open(url)
    fc = ForecastStore.open_or_create(url, small_grid())
    fc.write(make_forecast(small_grid(), INIT))
    assert list(ForecastStore.open(url).init_times()) == [INIT]


def test_reader_polling_sees_only_complete_runs(moto_s3, s3_bucket):
    """A reader in another thread polls ``version`` while the writer publishes runs: each listed run reads whole."""
    url = f"s3://{s3_bucket}/live/fc.zarr"
    grid = small_grid()
    writer = ForecastStore.create(url, grid, storage_options=moto_s3.options())
    inits = pd.date_range(INIT, periods=5, freq="5min")
    expected = {_key(t): make_forecast(grid, t, seed=i) for i, t in enumerate(inits)}
    reader = ForecastStore.open(url, storage_options=moto_s3.options())
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read_loop() -> None:
        last = None
        try:
            while not stop.is_set():
                version = reader.version
                if version != last:
                    last = version
                    keys = reader.run_keys()
                    for key in keys:
                        f = expected[key]
                        for i in range(len(LEADS)):
                            lead = pd.Timedelta(minutes=LEADS[i])
                            for var in (dims.RAIN_RATE, dims.LIGHTNING_PROBABILITY):
                                np.testing.assert_array_equal(
                                    reader.read_lead(key, lead, var), f[var].values[i], err_msg=f"{var} {key}+{lead} ({version})"
                                )
                    seen.append(len(keys))
                time.sleep(0.01)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    thread = threading.Thread(target=read_loop, daemon=True)
    thread.start()
    try:
        for f in expected.values():
            writer.write(f)
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not errors and (not seen or seen[-1] < len(inits)):
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors[0]
    assert seen[-1] == len(inits)
    assert seen == sorted(seen)  # runs never disappear (no retention here)
    assert len(seen) >= 3  # the reader really observed the store growing


def test_a_run_without_marker_is_invisible_on_s3(moto_s3, s3_bucket):
    url = f"s3://{s3_bucket}/partial/fc.zarr"
    grid = small_grid()
    fc = ForecastStore.create(url, grid, storage_options=moto_s3.options())
    fc.write(make_forecast(grid, INIT))
    client = moto_s3.client()
    # data of a run whose writer died before publishing its marker
    later = INIT + pd.Timedelta("5min")
    client.put_object(Bucket=s3_bucket, Key=f"partial/fc.zarr/runs/{_key(later)}/zarr.json", Body=b"{}")
    assert fc.run_keys() == [_key(INIT)] and not fc.has(later)
    with pytest.raises(ForecastStoreError, match="no complete forecast run"):
        fc.open_run(later)
    marker = json.loads(client.get_object(Bucket=s3_bucket, Key=f"partial/fc.zarr/complete/{_key(INIT)}.json")["Body"].read())
    assert marker["lead_minutes"] == list(LEADS)
    # retention leaves a fresh leftover alone (the writer may still be writing it)
    fc.write(make_forecast(grid, INIT + pd.Timedelta("10min")))
    fc.apply_retention(keep=5)
    assert any(k.startswith(f"partial/fc.zarr/runs/{_key(later)}/") for k in moto_s3.keys(s3_bucket))


def test_retention_on_s3(moto_s3, s3_bucket):
    url = f"s3://{s3_bucket}/ret/fc.zarr"
    grid = small_grid()
    fc = ForecastStore.create(url, grid, storage_options=moto_s3.options())
    inits = pd.date_range(INIT, periods=5, freq="5min")
    for t in inits:
        fc.write(make_forecast(grid, t))
    # a reader holding an open run that retention deletes gets the store's error, not garbage
    reader = ForecastStore.open(url, storage_options=moto_s3.options())
    reader.open_run(inits[0])

    assert fc.apply_retention(keep=3) == [_key(t) for t in inits[:2]]
    assert list(fc.init_times()) == list(inits[2:])
    keys = moto_s3.keys(s3_bucket, "ret/fc.zarr/")
    for t in inits[:2]:  # marker and every object of the run are gone (recursive delete)
        assert not [k for k in keys if _key(t) in k], f"objects of {_key(t)} left behind"
    assert any(k.startswith(f"ret/fc.zarr/runs/{_key(inits[2])}/") for k in keys)
    assert list(reader.init_times()) == list(inits[2:])
    with pytest.raises(ForecastStoreError):
        reader.read_lead(inits[0], pd.Timedelta("5min"))

    assert len(fc.apply_retention(max_age=pd.Timedelta("5min"))) == 1
    assert list(fc.init_times()) == list(inits[3:])
    # the newest run is never deleted
    assert fc.apply_retention(keep=1, max_age=pd.Timedelta(0)) == [_key(inits[3])]
    assert list(fc.init_times()) == [inits[-1]]
    assert fc.apply_retention(keep=1, max_age=pd.Timedelta(0)) == []
    np.testing.assert_array_equal(
        fc.read_lead(inits[-1], pd.Timedelta("5min")), make_forecast(grid, inits[-1])[dims.RAIN_RATE].values[0]
    )


def _fails_fast(url, options, match, max_seconds=15.0) -> ForecastStoreError:
    start = time.monotonic()
    with pytest.raises(ForecastStoreError, match=match) as err:
        ForecastStore.open_or_create(url, small_grid(), storage_options=options)
    elapsed = time.monotonic() - start
    assert elapsed < max_seconds, f"failure took {elapsed:.1f} s"
    assert url in str(err.value)
    return err.value


@pytest.mark.parametrize(("field", "value"), [("secret", "not-the-secret"), ("key", "AKIANOSUCHKEY0000000")])
def test_wrong_credentials_fail_fast_and_write_nothing(moto_s3, s3_bucket, field, value):
    url = f"s3://{s3_bucket}/fc.zarr"
    exc = _fails_fast(url, moto_s3.options(**{field: value}), "access denied.*credentials")
    assert "not-the-secret" not in str(exc)
    assert moto_s3.keys(s3_bucket) == []  # nothing created
    with pytest.raises(ForecastStoreError, match="access denied"):
        ForecastStore.open(url, storage_options=moto_s3.options(**{field: value}))


def test_missing_bucket_and_refused_endpoint_fail_fast(moto_s3, s3_bucket, refused_endpoint):
    _fails_fast("s3://no-such-bucket-here/fc.zarr", moto_s3.options(), "bucket not found")
    _fails_fast(f"s3://{s3_bucket}/fc.zarr", moto_s3.options(endpoint_url=refused_endpoint), "cannot connect to endpoint")


def test_silent_endpoint_times_out(moto_s3, s3_bucket, silent_endpoint):
    """An endpoint that accepts connections but never answers: bounded by the read timeout."""
    _fails_fast(f"s3://{s3_bucket}/fc.zarr", moto_s3.options(endpoint_url=silent_endpoint), "did not answer", 10)


# -- the ingest writer lease on S3 (ingest.WriterLock goes through nowcast.storage) --------
def test_ingest_writer_lock_honours_nowcast_s3_variables(moto_s3, s3_bucket, monkeypatch):
    from ingest import LockHeld, WriterLock

    monkeypatch.setenv("NOWCAST_S3_ENDPOINT_URL", moto_s3.endpoint)
    monkeypatch.setenv("NOWCAST_S3_KEY", moto_s3.key)
    monkeypatch.setenv("NOWCAST_S3_SECRET", moto_s3.secret)
    monkeypatch.setenv("NOWCAST_S3_REGION", "us-east-1")
    url = f"s3://{s3_bucket}/obs.zarr"
    first = WriterLock(url, ttl=30)
    first.acquire()
    assert moto_s3.keys(s3_bucket) == ["obs.zarr.ingest.lock"]
    with pytest.raises(LockHeld, match="being written by ingest pid"):
        WriterLock(url, ttl=30).acquire()
    first.refresh()
    first.release()
    assert moto_s3.keys(s3_bucket) == []
    second = WriterLock(url, ttl=30)
    second.acquire()
    second.release()


def test_ingest_writer_lock_fails_fast_on_a_dead_endpoint(moto_s3, s3_bucket, monkeypatch):
    from ingest import WriterLock

    monkeypatch.setenv("NOWCAST_S3_CONNECT_TIMEOUT", "1")
    monkeypatch.setenv("NOWCAST_S3_MAX_ATTEMPTS", "1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        opts = moto_s3.options(endpoint_url=f"http://127.0.0.1:{port}")
        start = time.monotonic()
        with pytest.raises(Exception, match=f"127.0.0.1:{port}"):  # botocore's connection error naming the endpoint
            WriterLock(f"s3://{s3_bucket}/obs.zarr", ttl=30, storage_options=opts).acquire()
        assert time.monotonic() - start < 10


def test_service_publishes_and_serves_forecasts_from_s3(moto_s3, s3_bucket, tmp_path):
    """ServiceSettings.forecast_store as an s3:// URL with forecast_store_options: the loop writes, the API reads."""
    from fastapi.testclient import TestClient

    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore
    from service.app import create_app
    from service.inference import InferenceLoop
    from service.settings import ServiceSettings

    grid = small_grid()
    obs = ObservationStore.create(str(tmp_path / "obs.zarr"), grid)
    radar = SyntheticRadar(grid=grid, seed=3, wet_fraction=0.3)
    for t in pd.date_range(end=INIT, periods=3, freq="5min"):
        ds = radar.frame(t)
        obs.append(ds[dims.RAIN_RATE].expand_dims({dims.TIME: [t.to_datetime64()]}), lightning=ds[dims.LIGHTNING].values)
    url = f"s3://{s3_bucket}/service/fc.zarr"
    settings = ServiceSettings(
        store=str(tmp_path / "obs.zarr"), forecast_store=url, forecast_store_options=moto_s3.options(),
        model="persistence", lead_minutes=[5, 10], run_ingest=False,
    )
    loop = InferenceLoop(settings)
    info = loop.step()
    assert info is not None and info.init_time == INIT
    assert f"service/fc.zarr/complete/{_key(INIT)}.json" in moto_s3.keys(s3_bucket)
    with TestClient(create_app(settings, loop)) as client:
        assert client.get("/v1/forecasts/latest").json()["init_time"] == "2025-06-01T10:00:00Z"
        lon0, lat0, lon1, lat1 = grid.bbox_lonlat()
        point = client.get(f"/v1/point?lat={(lat0 + lat1) / 2}&lon={(lon0 + lon1) / 2}").json()
    assert point["forecast_init_time"] == "2025-06-01T10:00:00Z"
    stored = ForecastStore.open(url, storage_options=moto_s3.options()).read_point(INIT, point["row"], point["col"])
    assert [p["lead_minutes"] for p in point["forecast"]] == [5, 10]
    np.testing.assert_allclose([p["rain_rate"] for p in point["forecast"]], stored[dims.RAIN_RATE], rtol=1e-6)
