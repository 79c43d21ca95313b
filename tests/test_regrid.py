"""Regridding, cropping and downsampling with analytic expectations."""

from __future__ import annotations

import time

import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer

from nowcast import dims
from nowcast.grid import Grid
from nowcast.regrid import _CACHE, clear_cache, crop, downsample, regrid

LAEA = "EPSG:3035"


def _frame(values: np.ndarray, grid: Grid, times=("2024-01-01 00:00",)) -> xr.DataArray:
    return dims.make_frames(values, list(times), grid.x, grid.y, grid.crs)


def _src_grid() -> Grid:
    return Grid.regular(LAEA, x0=4_000_500.0, y0=3_099_500.0, dx=1000.0, dy=-1000.0, nx=120, ny=100)


def test_identity_regrid_returns_same_values() -> None:
    g = _src_grid()
    rng = np.random.default_rng(0)
    v = rng.gamma(0.6, 2.0, g.shape).astype(np.float32)
    v[:10] = np.nan
    da = _frame(v, g)
    for method in ("nearest", "area_mean"):
        out = regrid(da, g, method=method)
        np.testing.assert_array_equal(out.values, da.values)
        assert Grid.of(out) == g
        assert out.dtype == np.float32 and out.dims == dims.FRAME_DIMS


def test_nearest_linear_field_same_crs() -> None:
    g = _src_grid()
    xx, yy = np.meshgrid(g.x, g.y)
    da = _frame((xx - g.x[0]) / 1000.0 + 0.5 * (g.y[0] - yy) / 1000.0, g)  # = col + 0.5 * row
    # target: every 3rd cell centre, shifted by 300 m (still inside the same source cell)
    t = Grid.regular(LAEA, x0=g.x[0] + 300, y0=g.y[0] - 300, dx=3000.0, dy=-3000.0, nx=30, ny=20)
    out = regrid(da, t, "nearest").values[0]
    cols, rows = np.arange(30) * 3, np.arange(20) * 3
    np.testing.assert_allclose(out, cols[None, :] + 0.5 * rows[:, None])


def test_nearest_outside_source_is_nan() -> None:
    g = _src_grid()
    da = _frame(np.ones(g.shape), g)
    t = Grid.regular(LAEA, x0=g.x[-1] - 1000, y0=g.y[0], dx=1000.0, dy=-1000.0, nx=4, ny=2)
    out = regrid(da, t).values[0]
    np.testing.assert_array_equal(out[:, :2], 1.0)
    assert np.isnan(out[:, 2:]).all()


def test_area_mean_block_constant_and_linear() -> None:
    g = _src_grid()
    da = _frame(np.full(g.shape, 3.5), g)
    t = Grid.from_bounds(LAEA, *g.bounds(), resolution=5000.0)
    out = regrid(da, t, "area_mean")
    assert out.shape == (1, 20, 24)
    np.testing.assert_allclose(out.values, 3.5)
    # a field linear in x: 5x5 block means equal the value at the block centre
    xx, _ = np.meshgrid(g.x, g.y)
    lin = _frame(xx / 1000.0, g)
    outl = regrid(lin, t, "area_mean").values[0]
    np.testing.assert_allclose(outl, np.broadcast_to(t.x / 1000.0, t.shape), rtol=1e-9)


def test_area_mean_nan_rule() -> None:
    g = Grid.regular(LAEA, x0=500.0, y0=3500.0, dx=1000.0, dy=-1000.0, nx=4, ny=4)
    v = np.ones((4, 4))
    v[0:2, 0:2] = [[np.nan, np.nan], [np.nan, 4.0]]  # 3 of 4 NaN -> NaN
    v[0:2, 2:4] = [[np.nan, np.nan], [2.0, 4.0]]  # 2 of 4 NaN -> mean of the others (3)
    v[2:4, 0:2] = [[np.nan, 1.0], [1.0, 4.0]]  # 1 of 4 NaN -> 2
    t = Grid.regular(LAEA, x0=1000.0, y0=3000.0, dx=2000.0, dy=-2000.0, nx=2, ny=2)
    out = regrid(_frame(v, g), t, "area_mean").values[0]
    assert np.isnan(out[0, 0])
    assert out[0, 1] == pytest.approx(3.0)
    assert out[1, 0] == pytest.approx(2.0)
    assert out[1, 1] == pytest.approx(1.0)


def test_area_mean_finer_target_falls_back_to_nearest() -> None:
    g = Grid.regular(LAEA, x0=1000.0, y0=3000.0, dx=2000.0, dy=-2000.0, nx=2, ny=2)
    v = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = Grid.regular(LAEA, x0=500.0, y0=3500.0, dx=1000.0, dy=-1000.0, nx=4, ny=4)
    out = regrid(_frame(v, g), t, "area_mean").values[0]
    np.testing.assert_array_equal(out, np.kron(v, np.ones((2, 2))))


def test_lonlat_source_onto_laea_nearest() -> None:
    """An MRMS-like lon/lat grid regridded onto LAEA: each target takes the source cell of its lon/lat."""
    lon = -100.0 + 0.01 * np.arange(400) + 0.005
    lat = 42.0 - 0.01 * np.arange(300) - 0.005
    src = Grid(x=lon, y=lat, crs_wkt=__import__("pyproj").CRS("EPSG:4326").to_wkt())
    cols, rows = np.meshgrid(np.arange(lon.size), np.arange(lat.size))
    da = _frame(cols + 1000.0 * rows, src)  # value encodes the cell position (exact in float32)
    laea = "+proj=laea +lat_0=40 +lon_0=-98 +ellps=WGS84 +units=m"
    tr = Transformer.from_crs("EPSG:4326", laea, always_xy=True)
    cx, cy = tr.transform(-97.9973, 40.5027)  # off the source cell edges (no ties)
    t = Grid.regular(laea, x0=cx - 50_000, y0=cy + 50_000, dx=2000.0, dy=-2000.0, nx=51, ny=51)
    out = regrid(da, t, "nearest").values[0]
    back = Transformer.from_crs(laea, "EPSG:4326", always_xy=True)
    tx, ty = np.meshgrid(t.x, t.y)
    tlon, tlat = back.transform(tx, ty)
    ci = np.floor((tlon - (lon[0] - 0.005)) / 0.01).astype(int)
    ri = np.floor(((lat[0] + 0.005) - tlat) / 0.01).astype(int)
    np.testing.assert_array_equal(out, ci + 1000.0 * ri)
    assert dims.crs_of(regrid(da, t)).equals(t.crs)


def test_lonlat_onto_laea_area_mean_conserves_constant() -> None:
    lon = -100.0 + 0.01 * np.arange(400) + 0.005
    lat = 42.0 - 0.01 * np.arange(300) - 0.005
    src = Grid(x=lon, y=lat, crs_wkt=__import__("pyproj").CRS("EPSG:4326").to_wkt())
    v = np.full(src.shape, 2.0)
    v[:, :200] = np.nan  # western half without coverage
    laea = "+proj=laea +lat_0=40 +lon_0=-98 +ellps=WGS84 +units=m"
    t = Grid.regular(laea, x0=-60_000, y0=100_000, dx=5000.0, dy=-5000.0, nx=25, ny=25)
    out = regrid(_frame(v, src), t, "area_mean").values[0]
    assert set(np.unique(out[np.isfinite(out)])) == {2.0}
    # the coverage edge (lon -98) splits the target roughly in half
    assert 0.3 < np.isnan(out).mean() < 0.7


def test_leading_dims_and_cache() -> None:
    clear_cache()
    g = _src_grid()
    rng = np.random.default_rng(3)
    da = _frame(rng.random((3,) + g.shape), g, times=["2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:10"])
    t = Grid.from_bounds("EPSG:3857", 1_700_000, 6_300_000, 1_800_000, 6_400_000, 4000.0)
    out = regrid(da, t, "area_mean")
    assert out.shape == (3,) + t.shape
    np.testing.assert_array_equal(out.time.values, da.time.values)
    for i in range(3):
        np.testing.assert_array_equal(out.values[i], regrid(da.isel(time=[i]), t, "area_mean").values[0])
    assert len(_CACHE) == 1
    for k in range(12):  # bounded
        regrid(da, Grid.regular(LAEA, g.x[0] + k, g.y[0], 1000.0, -1000.0, 5, 5))
    assert len(_CACHE) <= 8


def test_bad_method() -> None:
    g = _src_grid()
    with pytest.raises(ValueError, match="unknown regrid method 'bilinear'"):
        regrid(_frame(np.zeros(g.shape), g), g, method="bilinear")  # type: ignore[arg-type]


def test_crop() -> None:
    g = _src_grid()
    da = _frame(np.arange(g.shape[0] * g.shape[1], dtype=float).reshape(g.shape), g)
    c = crop(da, (4_010_000, 3_050_000, 4_020_000, 3_060_000))
    assert c.x.min() >= 4_010_000 and c.x.max() <= 4_020_000
    assert c.y.min() >= 3_050_000 and c.y.max() <= 3_060_000
    assert c.shape == (1, 10, 10)
    assert float(c.values[0, 0, 0]) == float(da.sel(x=c.x[0], y=c.y[0]).values[0])
    with pytest.raises(ValueError, match="does not overlap"):
        crop(da, (0, 0, 10, 10))
    with pytest.raises(ValueError, match="min < max"):
        crop(da, (10, 0, 0, 10))


def test_downsample_block_mean_nan_aware() -> None:
    g = Grid.regular(LAEA, x0=500.0, y0=4500.0, dx=1000.0, dy=-1000.0, nx=5, ny=5)
    v = np.arange(25, dtype=float).reshape(5, 5)
    v[0, 0] = np.nan  # 1 of 4 NaN: mean of the rest
    v[2:4, 2:4] = np.nan  # all NaN: NaN
    out = downsample(_frame(v, g), 2)
    assert out.shape == (1, 2, 2)  # trailing row/column dropped
    assert out.values[0, 0, 0] == pytest.approx((1 + 5 + 6) / 3)
    assert out.values[0, 0, 1] == pytest.approx((2 + 3 + 7 + 8) / 4)
    assert np.isnan(out.values[0, 1, 1])
    np.testing.assert_allclose(out.x.values, [1000.0, 3000.0])
    np.testing.assert_allclose(out.y.values, [4000.0, 2000.0])
    with pytest.raises(ValueError):
        downsample(_frame(v, g), 0)


@pytest.mark.slow
def test_large_grid_speed() -> None:
    """4400x3800 (OPERA CIRRUS size) onto a 1 km target in another CRS: a few seconds."""
    g = Grid.regular("+proj=laea +lat_0=55 +lon_0=10 +x_0=1950000 +y_0=-2100000 +ellps=WGS84", 500.0, -500.0, 1000.0, -1000.0, 3800, 4400)
    rng = np.random.default_rng(0)
    da = _frame(rng.random(g.shape, dtype=np.float32), g)
    t = Grid.from_bounds(LAEA, 3_800_000, 2_700_000, 4_700_000, 3_500_000, 1000.0)
    for method in ("nearest", "area_mean"):
        t0 = time.perf_counter()
        regrid(da, t, method)
        assert time.perf_counter() - t0 < 10
        t0 = time.perf_counter()
        regrid(da, t, method)
        assert time.perf_counter() - t0 < 2  # cached mapping


@pytest.mark.slow
def test_real_mrms_onto_laea(shared_data) -> None:
    """Real MRMS (lon/lat, 0.01 deg) onto a 2 km LAEA grid: area mean keeps the mean rain rate."""
    from nowcast.io import read_radar

    files = sorted((shared_data / "radar" / "mrms").glob("*/*.grib2"))
    if not files:
        pytest.skip("no MRMS files")
    da = read_radar(files[0])
    laea = "+proj=laea +lat_0=38 +lon_0=-97 +ellps=WGS84 +units=m"
    t = Grid.from_bounds(laea, -600_000, -400_000, 600_000, 400_000, 2000.0)
    t0 = time.perf_counter()
    out = regrid(da, t, "area_mean")
    assert time.perf_counter() - t0 < 15
    # the source cells whose centres fall into the target domain
    sub = da.sel(x=slice(-106.0, -88.0), y=slice(45.0, 31.0))
    fwd = Transformer.from_crs("EPSG:4326", laea, always_xy=True)
    sx, sy = fwd.transform(*np.meshgrid(sub.x.values, sub.y.values))
    xmin, ymin, xmax, ymax = t.bounds()
    inside = (sx >= xmin) & (sx < xmax) & (sy >= ymin) & (sy < ymax)
    assert np.isfinite(out.values).mean() > 0.9
    # equal-count weighting differs from equal-area weighting by cos(lat) only (~12 % over the domain)
    assert float(np.nanmean(out.values)) == pytest.approx(float(np.nanmean(sub.values[0][inside])), rel=0.15)
    near = regrid(da, t, "nearest")
    assert float(np.nanmean(near.values)) == pytest.approx(float(np.nanmean(out.values)), rel=0.1)
