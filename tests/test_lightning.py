"""Lightning readers (real GOES-16 GLM L2 LCFA files, stroke lists) and gridding."""

from __future__ import annotations

import json
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer

from nowcast import dims
from nowcast.grid import Grid
from nowcast.lightning import (
    Flashes,
    LightningError,
    glm_time_coverage,
    grid_counts,
    read_glm_lcfa,
    read_lightning,
    read_strokes,
)


@pytest.fixture
def glm_files(shared_data: Path) -> list[Path]:
    d = shared_data / "lightning" / "glm" / "20180702"
    files = sorted(d.glob("OR_GLM-L2-LCFA_*.nc"))
    if len(files) < 3:
        pytest.skip(f"real data not available: GLM LCFA files absent under {d} (see ../shared/data/DATA.md)")
    return files


def test_glm_decoding_matches_netcdf4_auto_decoding(glm_files: list[Path]) -> None:
    for f in glm_files:
        fl = read_glm_lcfa(f)
        with netCDF4.Dataset(f) as nc:  # netCDF4 applies scale/offset/_Unsigned itself
            lat = np.ma.filled(nc["flash_lat"][:].astype(float), np.nan)
            lon = np.ma.filled(nc["flash_lon"][:].astype(float), np.nan)
            off_ms = np.ma.filled(nc["flash_time_offset_of_first_event"][:].astype(float), np.nan)
            product = netCDF4.num2date(nc["product_time"][:], nc["product_time"].units, only_use_cftime_datetimes=False)
        base = pd.Timestamp(product.isoformat())
        expected = (base + pd.to_timedelta(off_ms, unit="ms")).values
        assert 250 <= len(fl) <= 320
        np.testing.assert_array_equal(fl.time, expected)
        np.testing.assert_allclose(fl.lat, lat)
        np.testing.assert_allclose(fl.lon, lon)
        start, end = glm_time_coverage(f)
        assert end - start == pd.Timedelta("20s")
        # flashes end inside the file period (a flash may start up to ~1 s before it)
        assert fl.time.max() <= end.to_datetime64()
        assert fl.time.min() >= (start - pd.Timedelta("5s")).to_datetime64()
        assert np.all((fl.lon > -130) & (fl.lon < -30) & (fl.lat > -60) & (fl.lat < 60))


def test_latlon_grid_counts_equal_direct_histogram(glm_files: list[Path]) -> None:
    fl = Flashes.concat([read_lightning(f) for f in glm_files])
    grid = Grid.from_bounds("EPSG:4326", -120.0, -37.0, -47.0, 53.0, 0.5)
    counts = grid_counts(fl, grid, cadence="5min")
    # all flashes of 04:32:59-04:33:59 fall in the slots ending 04:35 (and 04:30... none before)
    labels = pd.DatetimeIndex(fl.time).ceil("5min")
    assert list(counts[dims.TIME].values) == sorted(set(labels.values))
    total = 0
    for t in counts[dims.TIME].values:
        sel = labels.values == t
        lat_edges = np.linspace(-37.0, 53.0, 181)
        lon_edges = np.linspace(-120.0, -47.0, 147)
        h, _, _ = np.histogram2d(fl.lat[sel], fl.lon[sel], bins=[lat_edges, lon_edges])
        np.testing.assert_array_equal(counts.sel(time=t).values, h[::-1])  # north-up rows
        total += h.sum()
    inside = (fl.lon >= -120) & (fl.lon < -47) & (fl.lat >= -37) & (fl.lat < 53)
    assert counts.dtype == np.float32 and counts.sum() == total == inside.sum() > 800


def test_projected_grid_counts_equal_brute_force(glm_files: list[Path]) -> None:
    fl = Flashes.concat([read_lightning(f) for f in glm_files])
    # a 40 km equal-area grid over the Americas, only partly covering the flashes
    crs = "+proj=laea +lat_0=5 +lon_0=-80 +datum=WGS84 +units=m"
    grid = Grid.from_bounds(crs, -3_000_000, -3_000_000, 3_000_000, 3_000_000, 40_000)
    slot = pd.Timestamp("2018-07-02 04:35")
    counts = grid_counts(fl, grid, times=[slot, slot + pd.Timedelta("5min")])
    assert counts.shape == (2, *grid.shape)
    assert float(counts.isel(time=1).sum()) == 0.0
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(fl.lon, fl.lat)
    xmin, ymin, xmax, ymax = grid.bounds()
    expected = np.zeros(grid.shape)
    for xi, yi in zip(x, y, strict=True):
        if xmin <= xi < xmax and ymin <= yi < ymax:
            col = int((xi - xmin) // 40_000)
            row = int((ymax - yi) // 40_000)
            expected[row, col] += 1
    assert 0 < expected.sum() < len(fl)
    np.testing.assert_array_equal(counts.isel(time=0).values, expected)


def test_interval_convention_end_inclusive() -> None:
    t = pd.to_datetime(["2024-01-01 00:00:00", "2024-01-01 00:00:01", "2024-01-01 00:05:00"]).values
    fl = Flashes(t, np.array([46.5] * 3), np.array([9.5] * 3))
    grid = Grid.from_bounds("EPSG:4326", 9.0, 46.0, 10.0, 47.0, 0.5)
    counts = grid_counts(fl, grid)
    assert list(pd.DatetimeIndex(counts[dims.TIME].values)) == [pd.Timestamp("2024-01-01 00:00"), pd.Timestamp("2024-01-01 00:05")]
    assert counts.sum(dim=("y", "x")).values.tolist() == [1.0, 2.0]


def test_stroke_csv_and_json_lines(tmp_path: Path) -> None:
    csv_file = tmp_path / "strokes.csv"
    csv_file.write_text(
        "Timestamp,Latitude,Longitude,type,peak_current\n"
        "2024-06-01T12:01:02Z,46.51,9.52,CG,-23.5\n"
        "2024-06-01T12:04:59.5Z,46.49,9.48,IC,\n"
        "2024-06-01T12:06:00Z,47.9,11.1,CG,40\n"
    )
    fl = read_strokes(csv_file)
    assert len(fl) == 3
    assert fl.kind is not None and list(fl.kind) == ["CG", "IC", "CG"]
    assert fl.current is not None and fl.current[0] == -23.5 and np.isnan(fl.current[1])
    assert fl.time[1] == np.datetime64("2024-06-01T12:04:59.500")
    jl = tmp_path / "strokes.jsonl"
    jl.write_text("\n".join(json.dumps({"time": 1717243262.0 + i, "lat": 46.5, "lon": 9.5}) for i in range(4)) + "\n")
    fj = read_lightning(jl)
    assert len(fj) == 4 and fj.kind is None
    assert pd.Timestamp(fj.time[0]) == pd.Timestamp("2024-06-01 12:01:02")
    grid = Grid.from_bounds("EPSG:4326", 9.0, 46.0, 10.0, 47.0, 0.25)
    c = grid_counts(Flashes.concat([fl, fj]), grid)
    assert float(c.sum()) == 6.0  # the 47.9/11.1 stroke is outside the grid


@pytest.mark.parametrize(
    "content, match",
    [
        ("time,lat\n2024-01-01T00:00Z,1\n", "no 'lon' column"),
        ('{"time": "2024-01-01T00:00Z", "lat": 95, "lon": 1}\n', "out of range"),
        ('{"time": "x"\n', "invalid JSON"),
    ],
)
def test_bad_stroke_lists_name_the_file(tmp_path: Path, content: str, match: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(LightningError, match=match) as err:
        read_strokes(f)
    assert "bad.csv" in str(err.value)


def test_corrupt_glm_file_raises(tmp_path: Path, glm_files: list[Path]) -> None:
    f = tmp_path / glm_files[0].name
    f.write_bytes(glm_files[0].read_bytes()[:5000])
    with pytest.raises(LightningError, match=f.name):
        read_lightning(f)


def test_packed_unsigned_and_fill_decoded_like_netcdf4(tmp_path: Path) -> None:
    """A seeded GLM-like file whose time offsets use _Unsigned int16 beyond 32767 and a fill."""
    from nowcast.lightning import _decode_packed

    rng = np.random.default_rng(0)
    path = tmp_path / "OR_GLM-L2-LCFA_G16_s20240010000000_e20240010001000_c20240010001100.nc"
    offsets_ms = rng.integers(0, 60_000, 50).astype(float)  # up to 60 s: needs the unsigned range
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("number_of_flashes", 50)
        lat = nc.createVariable("flash_lat", "f4", ("number_of_flashes",))
        lon = nc.createVariable("flash_lon", "f4", ("number_of_flashes",))
        off = nc.createVariable("flash_time_offset_of_first_event", "i2", ("number_of_flashes",), fill_value=np.int16(-1))
        off.setncatts({"_Unsigned": "true", "scale_factor": np.float32(1.0), "add_offset": np.float32(0.0), "units": "milliseconds since 2024-01-01 00:00:00.000"})
        lat[:] = rng.uniform(-30, 30, 50)
        lon[:] = rng.uniform(-100, -50, 50)
        off.set_auto_maskandscale(True)
        values = np.ma.masked_array(offsets_ms, mask=np.arange(50) == 7)
        off[:] = values
        nc.createVariable("product_time", "f8").setncattr("units", "seconds since 2000-01-01 12:00:00")
    with netCDF4.Dataset(path) as nc:
        ref = np.ma.filled(nc["flash_time_offset_of_first_event"][:].astype(float), np.nan)
        nc.set_auto_maskandscale(False)
        mine = _decode_packed(nc["flash_time_offset_of_first_event"])
        assert nc["flash_time_offset_of_first_event"][:].min() < 0  # stored wrapped as signed
    np.testing.assert_array_equal(mine, ref)
    assert np.isnan(mine[7]) and np.nanmax(mine) > 32767
    fl = read_glm_lcfa(path)
    assert len(fl) == 49  # the fill value is dropped
    np.testing.assert_array_equal(fl.time, (pd.Timestamp("2024-01-01") + pd.to_timedelta(np.delete(offsets_ms, 7), unit="ms")).values)
