"""The v1 API on a real observation store and a forecast made by the inference loop."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from nowcast import plotting

LAST = "20250601T1200"


def png(resp) -> np.ndarray:  # noqa: ANN001
    """The RGBA pixels of a PNG response (tiles are palette PNGs with tRNS alpha)."""
    assert resp.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGBA"))


def test_status_reports_frame_forecast_model(shared_env) -> None:  # noqa: ANN001
    r = shared_env.client.get("/v1/status")
    assert r.status_code == 200
    body = r.json()
    assert body["observations"]["last_frame"] == "2025-06-01T12:00:00Z"
    assert body["observations"]["frames"] == 6
    assert body["observations"]["age_seconds"] > 0
    assert body["forecast"]["init_time"] == "2025-06-01T12:00:00Z"
    assert body["forecast"]["model"] == "persistence"
    assert body["model"]["active"] == "persistence" and body["model"]["fallback"] is False
    assert body["status"] == "degraded"  # the test data are more than 3 h old
    assert r.headers["cache-control"] == "no-cache"


def test_frames_index_lists_immutable_urls(shared_env) -> None:  # noqa: ANN001
    r = shared_env.client.get("/v1/frames")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=5"
    body = r.json()
    keys = [f["key"] for f in body["observed"]]
    assert keys == [t.strftime("%Y%m%dT%H%M") for t in pd.date_range(end="2025-06-01T12:00", periods=6, freq="5min")]
    assert [f["lead_minutes"] for f in body["forecast"]] == [5, 10, 15, 30, 60, 75]
    assert body["forecast"][0]["tiles"]["rain"] == "/v1/tiles/rain/20250601T1200+5/{z}/{x}/{y}.png"
    assert body["forecast"][-1]["valid_time"] == "2025-06-01T13:15:00Z"
    lon0, lat0, lon1, lat1 = body["bbox_lonlat"]
    assert 8 < lon0 < lon1 < 12 and 45 < lat0 < lat1 < 48
    # the listed immutable tile URLs answer with long cache headers
    url = body["observed"][0]["tiles"]["rain"].format(z=6, x=33, y=22)
    t = shared_env.client.get(url)
    assert t.status_code == 200 and "immutable" in t.headers["cache-control"]


def test_forecast_metadata(shared_env) -> None:  # noqa: ANN001
    latest = shared_env.client.get("/v1/forecasts/latest").json()
    assert latest["lead_minutes"] == [5, 10, 15, 30, 60, 75]
    assert latest["grid"]["shape"] == [48, 64]
    assert latest["grid"]["crs"] == "EPSG:3035"
    assert len(latest["grid"]["bbox_lonlat"]) == 4
    assert latest["model"] == "persistence"
    for key in ("20250601T1200", "2025-06-01T12:00:00Z", "2025-06-01T12:00"):
        r = shared_env.client.get(f"/v1/forecasts/{key}")
        assert r.status_code == 200, key
        assert r.json()["init_time"] == latest["init_time"]
        assert "immutable" in r.headers["cache-control"]
    assert shared_env.client.get("/v1/forecasts").json()["init_times"] == ["2025-06-01T12:00:00Z"]


@pytest.mark.parametrize(
    ("url", "status", "needle"),
    [
        ("/v1/forecasts/20250601T1100", 404, "no forecast run"),
        ("/v1/forecasts/yesterday", 400, "malformed init time"),
        ("/v1/forecasts/2025-13-45T99:00", 400, "malformed"),
        ("/v1/tiles/rain/20250601T1100/6/33/22.png", 404, "no observed frame"),
        ("/v1/tiles/rain/20250601T1200+20/6/33/22.png", 404, "valid leads"),
        ("/v1/tiles/rain/20250601T1201/6/33/22.png", 404, "no observed frame"),
        ("/v1/tiles/rain/noon/6/33/22.png", 400, "malformed time key"),
        ("/v1/tiles/snow/latest/6/33/22.png", 422, "rain"),
        ("/v1/tiles/rain/latest/13/33/22.png", 404, "zoom 13 outside"),
        ("/v1/tiles/rain/latest/2/4/1.png", 404, "outside the tile matrix"),
        ("/v1/tiles/rain/latest/-1/0/0.png", 422, ""),
        ("/v1/maps/rain/20250601T1200+7", 404, "valid leads"),
        ("/v1/maps/rain/latest?format=tiff", 422, ""),
        ("/v1/point?lat=10&lon=8.5", 404, "outside the domain (lon"),
        ("/v1/point?lat=95&lon=8.5", 422, ""),
        ("/v1/point?lat=abc&lon=8.5", 422, ""),
        ("/v1/point?lat=46", 422, ""),
        ("/v1/legend/hail", 422, ""),
    ],
)
def test_bad_input_is_4xx_with_message(shared_env, url: str, status: int, needle: str) -> None:  # noqa: ANN001
    r = shared_env.client.get(url)
    assert r.status_code == status, r.text
    assert needle in r.text


def test_tile_colours_match_the_field(shared_env) -> None:  # noqa: ANN001
    """Sampling is nearest-cell: a tile's colours are the colour-scale colours of the store cells."""
    from service.tiles import TileSampler

    env = shared_env
    access = env.app.state.access
    field = np.asarray(env.writer.window("2025-06-01T12:00", 1)["rain_rate"].values[0])
    sampler = TileSampler(env.writer.grid)
    for z, x, y in [(6, 33, 22), (7, 67, 45), (8, 134, 90)]:
        img = png(env.client.get(f"/v1/tiles/rain/{LAST}/{z}/{x}/{y}.png"))
        assert img.shape == (256, 256, 4)
        idx = sampler.index(z, x, y)
        expect = plotting.colorize(np.where(idx >= 0, field.ravel()[np.clip(idx, 0, None)], np.nan), "rain", alpha=220)
        np.testing.assert_array_equal(img, expect)
        assert access.sampler().index(z, x, y) is not None
    # transparent outside the domain and in the no-coverage corner
    far = png(env.client.get(f"/v1/tiles/rain/{LAST}/6/0/0.png"))
    assert far[..., 3].max() == 0
    assert np.isnan(field[:8, :8]).all()


def test_tile_pixel_lands_on_the_right_cell(shared_env) -> None:  # noqa: ANN001
    """Independent check of the reprojection: the pixel containing a cell centre maps to that cell."""
    from pyproj import Transformer

    from service.tiles import TileSampler, tile_bounds

    grid = shared_env.writer.grid
    sampler = TileSampler(grid)
    to_merc = Transformer.from_crs(grid.crs, "EPSG:3857", always_xy=True)
    z = 9
    for row, col in [(10, 10), (30, 50), (47, 63), (0, 20)]:
        mx, my = to_merc.transform(grid.x[col], grid.y[row])
        n = 1 << z
        size = 2 * 20037508.342789244 / n
        tx, ty = int((mx + 20037508.342789244) // size), int((20037508.342789244 - my) // size)
        xmin, _, _, ymax = tile_bounds(z, tx, ty)
        px, py = int((mx - xmin) / size * 256), int((ymax - my) / size * 256)
        assert sampler.index(z, tx, ty)[py, px] == row * grid.shape[1] + col


def test_map_png_and_netcdf(shared_env) -> None:  # noqa: ANN001
    import xarray as xr

    r = shared_env.client.get(f"/v1/maps/rain/{LAST}")
    img = png(r)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert "immutable" in r.headers["cache-control"]
    r = shared_env.client.get("/v1/maps/lightning/latest+15")
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=5"
    nc = shared_env.client.get(f"/v1/maps/rain/{LAST}+30?format=nc")
    assert nc.status_code == 200 and nc.headers["content-type"] == "application/x-netcdf"
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".nc") as f:
        f.write(nc.content)
        f.flush()
        ds = xr.open_dataset(f.name).load()
    assert set(ds.data_vars) >= {"rain_rate", "lightning_probability"}
    assert ds["rain_rate"].shape == (1, 48, 64)
    assert "crs_wkt" in ds["spatial_ref"].attrs
    fc = shared_env.app.state.access.forecasts()
    np.testing.assert_array_equal(ds["rain_rate"].values[0], fc.read_lead(LAST, pd.Timedelta("30min")))
    obs = shared_env.client.get(f"/v1/maps/rain/{LAST}?format=nc")
    with tempfile.NamedTemporaryFile(suffix=".nc") as f:
        f.write(obs.content)
        f.flush()
        o = xr.open_dataset(f.name).load()
    assert set(o.data_vars) >= {"rain_rate", "lightning"}
    np.testing.assert_array_equal(o["rain_rate"].values[0], shared_env.writer.window(LAST, 1)["rain_rate"].values[0])


def test_point_series(shared_env) -> None:  # noqa: ANN001
    grid = shared_env.writer.grid
    from pyproj import Transformer

    row, col = 30, 40
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(grid.x[col], grid.y[row])
    r = shared_env.client.get(f"/v1/point?lat={lat}&lon={lon}")
    assert r.status_code == 200
    body = r.json()
    assert (body["row"], body["col"]) == (row, col)
    assert [p["time"] for p in body["observed"]][-1] == "2025-06-01T12:00:00Z"
    assert len(body["observed"]) == 13  # the last hour at 5 min
    assert all(p["rain_rate"] is None for p in body["observed"][:7])  # not in the store: missing, not dry
    window = shared_env.writer.window(LAST, 6)
    expect = window["rain_rate"].values[:, row, col]
    got = np.array([p["rain_rate"] for p in body["observed"][7:]], dtype=float)
    np.testing.assert_allclose(got, expect, atol=1e-4)
    assert [p["lead_minutes"] for p in body["forecast"]] == [5, 10, 15, 30, 60, 75]
    # persistence: every lead equals the last observation
    assert all(abs(p["rain_rate"] - expect[-1]) < 1e-3 for p in body["forecast"])
    assert body["model"] == "persistence"


def test_point_json_is_written_exactly_as_the_schema_serialises_it(shared_env) -> None:  # noqa: ANN001
    """The point series is written directly, not through the pydantic models: byte for byte the same
    JSON as PointResponse.model_dump_json for every cell (covered, uncovered, edges) and for the
    awkward floats (-0.0, tiny, huge, NaN, inf)."""
    import math

    from pydantic_core import to_json

    from service.data import iso
    from service.routes.point import _json_numbers, _labels, _stacks, series_tail
    from service.schemas import ForecastPoint, ObservedPoint, PointResponse

    def _num(v: float) -> float | None:
        v = float(v)
        return None if math.isnan(v) or math.isinf(v) else round(v, 4)

    def point_series(access, settings, snap, row: int, col: int) -> PointResponse:  # noqa: ANN001 - the schema's own serialisation
        obs_stack, fc_stack = _stacks(access, settings, snap)
        run = snap.latest_run
        obs_times, lead_minutes, valid_times = _labels(obs_stack, fc_stack, run)
        _, rain, light = obs_stack
        _, frain, fprob = fc_stack
        return PointResponse(
            lat=0.0,
            lon=0.0,
            row=row,
            col=col,
            observed=[ObservedPoint(time=t, rain_rate=_num(rain[i, row, col]), lightning=_num(light[i, row, col])) for i, t in enumerate(obs_times)],
            forecast_init_time=iso(run.init_time),
            model=run.model,
            forecast=[
                ForecastPoint(lead_minutes=m, valid_time=valid_times[i], rain_rate=_num(frain[i, row, col]), lightning_probability=_num(fprob[i, row, col]))
                for i, m in enumerate(lead_minutes)
            ],
        )

    access, settings = shared_env.app.state.access, shared_env.app.state.settings
    snap = access.snapshot()
    ny, nx = access.grid().shape
    head = b'{"lat":0.0,"lon":0.0,'
    for row in range(0, ny, 3):
        for col in range(0, nx, 3):
            expect = point_series(access, settings, snap, row, col).model_dump_json().encode()
            assert head + series_tail(access, settings, snap, row, col) == expect, (row, col)
    odd = np.array([0.0, -0.0, 1e-5, -0.00004, 0.00005, 123456.78912, 3.3e15, 2.5e16, -7e20, np.nan, np.inf, -np.inf, 1.0, 12.5], dtype=np.float64)
    assert _json_numbers(odd) == [to_json(_num(v)).decode() for v in odd]
    assert _json_numbers(odd.astype(np.float32)) == [to_json(_num(v)).decode() for v in odd.astype(np.float32)]


def test_point_without_coverage_is_null(shared_env) -> None:  # noqa: ANN001
    grid = shared_env.writer.grid
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(grid.x[2], grid.y[2])
    body = shared_env.client.get(f"/v1/point?lat={lat}&lon={lon}").json()
    assert all(p["rain_rate"] is None for p in body["observed"])
    assert all(p["rain_rate"] is None for p in body["forecast"])


def test_metrics_exposition(shared_env) -> None:  # noqa: ANN001
    shared_env.client.get("/v1/frames")
    text = shared_env.client.get("/metrics").text
    assert 'nowcast_http_request_duration_seconds_count{method="GET",route="/v1/frames",status="200"}' in text
    assert "nowcast_observation_age_seconds " in text
    assert "nowcast_forecast_age_seconds " in text
    assert "nowcast_forecast_duration_seconds" in text


def test_dashboard_assets_are_local(shared_env) -> None:  # noqa: ANN001
    html = shared_env.client.get("/").text
    assert "/static/vendor/leaflet/leaflet.js" in html and "/static/app.js" in html
    assert "http://" not in html and "https://" not in html
    for asset in ("/static/app.js", "/static/app.css", "/static/vendor/leaflet/leaflet.js", "/static/vendor/leaflet/leaflet.css"):
        assert shared_env.client.get(asset).status_code == 200, asset


def test_openapi_is_versioned_and_typed(shared_env) -> None:  # noqa: ANN001
    spec = shared_env.client.get("/openapi.json").json()
    paths = spec["paths"]
    assert all(p.startswith("/v1/") for p in paths)
    for p in ("/v1/status", "/v1/frames", "/v1/forecasts/latest", "/v1/point"):
        schema = paths[p]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in schema, p
