"""The observation store on S3-compatible storage (moto's server on loopback)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from nowcast import dims
from nowcast.sources.synthetic import SyntheticRadar
from nowcast.store import ObservationStore, StoreError

T0 = pd.Timestamp("2024-06-01T23:30")  # the run crosses midnight: a second day group appears


@pytest.fixture(scope="module")
def radar() -> SyntheticRadar:
    return SyntheticRadar(SyntheticRadar.default_grid(nx=48, ny=40, resolution=4000.0), seed=7)


def _frame(radar: SyntheticRadar, t: pd.Timestamp):
    ds = radar.frame(t)
    return ds[dims.RAIN_RATE].expand_dims({dims.TIME: [ds[dims.TIME].values]}), ds[dims.LIGHTNING]


def test_create_append_window_info_on_s3(moto_s3, s3_bucket, radar):
    url = f"s3://{s3_bucket}/obs/alps.zarr"
    store = ObservationStore.create(url, radar.grid, storage_options=moto_s3.options())
    times = pd.date_range(T0, periods=10, freq="5min")
    for t in times[:4].append(times[6:]):  # two frames never written: a gap
        rain, light = _frame(radar, t)
        assert store.append(rain, lightning=light, source="synthetic")
    rain, _ = _frame(radar, times[0])
    assert store.append(rain) is False  # idempotent

    reader = ObservationStore.open(url, mode="r", storage_options=moto_s3.options())
    assert reader.grid.same_as(radar.grid)
    assert reader.last_complete() == times[-1]
    assert len(reader.days()) == 2
    win = reader.window(times[-1], 12, rows=slice(5, 30), cols=slice(10, 40))
    assert win.sizes == {dims.TIME: 12, dims.Y: 25, dims.X: 30}
    present = win["present"].values
    assert present.tolist() == [False, False, True, True, True, True, False, False, True, True, True, True]
    for i, t in enumerate(pd.DatetimeIndex(win[dims.TIME].values)):
        got = win[dims.RAIN_RATE].isel({dims.TIME: i}).values
        if present[i]:
            np.testing.assert_array_equal(got, radar.frame(t)[dims.RAIN_RATE].values[5:30, 10:40])
            np.testing.assert_array_equal(
                win[dims.LIGHTNING].isel({dims.TIME: i}).values, radar.frame(t)[dims.LIGHTNING].values[5:30, 10:40]
            )
        else:
            assert np.isnan(got).all()  # never written reads as missing, not as dry

    info = reader.info()
    assert info["frames"] == 8 and info["lightning_frames"] == 8
    assert info["gaps"] == [(times[4].isoformat(), times[5].isoformat(), 2)]
    assert info["size_bytes"] and 0 < info["size_bytes"] < info["uncompressed_rain_bytes"] * 2
    assert any(k.startswith("obs/alps.zarr/days/") for k in moto_s3.keys(s3_bucket))


def test_credentials_and_endpoint_from_environment(moto_s3, s3_bucket, radar, monkeypatch):
    monkeypatch.setenv("NOWCAST_S3_ENDPOINT_URL", moto_s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.key)
    monkeypatch.setenv("NOWCAST_S3_SECRET", moto_s3.secret)
    monkeypatch.setenv("NOWCAST_S3_REGION", "us-east-1")
    url = f"s3://{s3_bucket}/env.zarr"
    store = ObservationStore.open_or_create(url, radar.grid)
    rain, light = _frame(radar, T0)
    store.append(rain, lightning=light)
    assert ObservationStore.open(url).times().tolist() == [T0]


def _assert_fast_failure(url, options, match, max_seconds=15.0):
    start = time.monotonic()
    with pytest.raises(StoreError, match=match) as err:
        ObservationStore.create(url, SyntheticRadar.default_grid(nx=8, ny=8), storage_options=options)
    elapsed = time.monotonic() - start
    assert elapsed < max_seconds, f"failure took {elapsed:.1f} s"
    assert url in str(err.value)
    return err.value


@pytest.mark.parametrize(("field", "value"), [("secret", "not-the-secret"), ("key", "AKIANOSUCHKEY0000000")])
def test_wrong_credentials_fail_fast_and_write_nothing(moto_s3, s3_bucket, field, value):
    url = f"s3://{s3_bucket}/obs.zarr"
    exc = _assert_fast_failure(url, moto_s3.options(**{field: value}), "access denied.*credentials")
    assert "not-the-secret" not in str(exc)
    assert moto_s3.keys(s3_bucket) == []  # no partial store
    with pytest.raises(StoreError, match="access denied"):
        ObservationStore.open(url, storage_options=moto_s3.options(**{field: value}))


def test_missing_bucket_is_named(moto_s3, s3_bucket):
    _assert_fast_failure("s3://no-such-bucket-here/obs.zarr", moto_s3.options(), "bucket not found")
    with pytest.raises(StoreError, match="no observation store found"):  # a reachable bucket, no store
        ObservationStore.open(f"s3://{s3_bucket}/nothing.zarr", storage_options=moto_s3.options())


def test_refused_endpoint_fails_fast(moto_s3, s3_bucket, refused_endpoint):
    _assert_fast_failure(f"s3://{s3_bucket}/obs.zarr", moto_s3.options(endpoint_url=refused_endpoint), "cannot connect to endpoint")


def test_silent_endpoint_times_out(moto_s3, s3_bucket, silent_endpoint):
    """An endpoint that accepts connections but never answers: bounded by the read timeout."""
    _assert_fast_failure(f"s3://{s3_bucket}/obs.zarr", moto_s3.options(endpoint_url=silent_endpoint), "did not answer", 10)


def test_reader_sees_complete_frames_while_ingest_writes(moto_s3, s3_bucket, radar):
    """A reader polling ``version`` while the writer appends: frames are complete or absent."""
    url = f"s3://{s3_bucket}/live.zarr"
    writer = ObservationStore.create(url, radar.grid, storage_options=moto_s3.options())
    times = pd.date_range(T0, periods=8, freq="5min")  # crosses midnight: a day group appears mid-run
    expected = {t: radar.frame(t) for t in times}
    reader = ObservationStore.open(url, mode="r", storage_options=moto_s3.options())
    stop = threading.Event()
    seen: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def read_loop() -> None:
        last = None
        try:
            while not stop.is_set():
                version = reader.version
                if version != last:
                    last = version
                    win = reader.window(times[-1], len(times))
                    for i, t in enumerate(times):
                        for var, flag in ((dims.RAIN_RATE, "present"), (dims.LIGHTNING, "lightning_present")):
                            got = win[var].values[i]
                            if win[flag].values[i]:
                                np.testing.assert_array_equal(got, expected[t][var].values, err_msg=f"{var} {t} (version {version})")
                            else:
                                assert np.isnan(got).all(), f"{var} {t} half visible (version {version})"
                    seen.append((version, int(win["present"].values.sum())))
                time.sleep(0.01)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    thread = threading.Thread(target=read_loop, daemon=True)
    thread.start()
    try:
        for t in times:
            ds = expected[t]
            writer.append(ds[dims.RAIN_RATE].expand_dims({dims.TIME: [ds[dims.TIME].values]}), lightning=ds[dims.LIGHTNING])
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not errors and (not seen or seen[-1][1] < len(times)):
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors[0]
    counts = [n for _, n in seen]
    assert counts[-1] == len(times)
    assert counts == sorted(counts)  # frames never disappear
    assert len(seen) >= 3  # the reader really observed the store growing


def test_ingest_service_writes_synthetic_frames_to_s3(moto_s3, s3_bucket, monkeypatch):
    """The ingest service as deployed: store URL in its config, credentials and endpoint from AWS_*."""
    ingest_process = pytest.importorskip("ingest.process")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    url = f"s3://{s3_bucket}/ingest/obs.zarr"
    cfg = ingest_process.IngestConfig.model_validate(
        {
            "store": {"url": url, "grid": {"synthetic": True, "nx": 32, "ny": 24, "resolution": 4000.0}},
            "sources": [{"name": "synthetic", "type": "synthetic", "backfill": "30min", "seed": 5}],
        }
    )
    now = pd.Timestamp("2024-06-02T00:12")
    service = ingest_process.IngestService(cfg)
    try:
        reports = service.run_once(now)
    finally:
        service.close()
    assert sum(r.ingested + r.backfilled for r in reports) >= 6, reports
    store = ObservationStore.open(url)
    times = store.times()
    assert len(times) >= 6 and times[-1] <= now
    radar = SyntheticRadar(store.grid, seed=5)
    win = store.window(times[-1], 3)
    for i, t in enumerate(pd.DatetimeIndex(win[dims.TIME].values)):
        np.testing.assert_allclose(win[dims.RAIN_RATE].values[i], radar.frame(t)[dims.RAIN_RATE].values, rtol=1e-6)
