"""The data model: names, make_frames, CRS round trip and validate_frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import CRS

from nowcast import dims


def _frames(n: int = 2) -> xr.DataArray:
    rng = np.random.default_rng(11)
    v = rng.random((n, 6, 8))
    times = pd.date_range("2024-05-01 12:00", periods=n, freq="5min")
    return dims.make_frames(v, times, x=1000.0 * np.arange(8), y=5000.0 - 1000.0 * np.arange(6), crs="EPSG:3035")


def test_make_frames_follows_the_model() -> None:
    da = _frames()
    assert da.dims == dims.FRAME_DIMS and da.dtype == np.float32
    assert da.name == dims.RAIN_RATE and da.attrs["units"] == dims.RAIN_RATE_UNITS
    assert dims.crs_of(da).to_epsg() == 3035
    assert da.attrs["grid_mapping"] == dims.GRID_MAPPING
    assert dims.validate_frames(da) is da


def test_make_frames_2d_and_timezones() -> None:
    da = dims.make_frames(np.zeros((2, 3)), pd.Timestamp("2024-05-01 14:00", tz="Europe/Rome"),
                          x=np.arange(3.0), y=np.arange(2.0), crs="EPSG:4326")
    assert da.shape == (1, 2, 3)
    assert pd.Timestamp(da.time.values[0]) == pd.Timestamp("2024-05-01 12:00")  # converted to UTC, naive
    with pytest.raises(dims.DataModelError, match="2 frames but 1 timestamps"):
        dims.make_frames(np.zeros((2, 2, 3)), ["2024-01-01"], np.arange(3.0), np.arange(2.0), "EPSG:4326")


def test_crs_round_trips_through_netcdf(tmp_path) -> None:
    crs = CRS.from_proj4("+proj=stere +lat_0=90 +lat_ts=60 +lon_0=10 +a=6370040 +b=6370040 +units=m")
    da = dims.make_frames(np.ones((3, 4)), ["2024-01-01"], np.arange(4.0), np.arange(3.0)[::-1], crs)
    p = tmp_path / "f.nc"
    da.to_netcdf(p)
    back = xr.open_dataarray(p)
    assert dims.crs_of(back).equals(crs)


def test_crs_of_without_crs() -> None:
    with pytest.raises(dims.DataModelError, match="no CRS"):
        dims.crs_of(xr.DataArray(np.zeros((2, 2)), dims=("y", "x")))


def test_zr_relation_validation() -> None:
    assert dims.MARSHALL_PALMER == dims.ZRRelation(200.0, 1.6)
    for a, b in ((0, 1.6), (200, -1), (-1, -1)):
        with pytest.raises(ValueError, match="must be positive"):
            dims.ZRRelation(a, b)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.transpose("time", "x", "y"), "dims must be"),
        (lambda d: d.astype(np.float64), "float32"),
        (lambda d: d.assign_attrs(units="mm"), "units"),
        (lambda d: d.drop_vars("x"), "missing coordinate 'x'"),
        (lambda d: d.assign_coords(x=np.array([0.0, 2, 1, 3, 4, 5, 6, 7])), "strictly monotonic"),
        (lambda d: d.assign_coords(time=np.arange(2)), "datetime64"),
        (lambda d: d.drop_vars(dims.GRID_MAPPING).assign_attrs(grid_mapping=""), "no CRS"),
        (lambda d: d.copy(data=np.where(np.arange(8) == 3, -1.0, d.values).astype(np.float32)), "negative"),
    ],
)
def test_validate_frames_rejects_bad_inputs(mutate, message: str) -> None:
    bad = mutate(_frames())
    with pytest.raises(dims.DataModelError, match=message):
        dims.validate_frames(bad)


def test_validate_frames_accepts_nan_and_2d() -> None:
    da = _frames(1)
    v = da.values.copy()
    v[0, 0, 0] = np.nan
    dims.validate_frames(da.copy(data=v))
    dims.validate_frames(da.isel(time=0))
    dims.validate_frames(da.drop_vars(dims.GRID_MAPPING).assign_attrs(grid_mapping=""), require_crs=False)


def test_to_utc_helpers() -> None:
    idx = dims.to_utc_index(["2024-01-01T01:00+01:00", "2024-01-01T00:05Z"])
    assert list(idx) == [pd.Timestamp("2024-01-01 00:00"), pd.Timestamp("2024-01-01 00:05")]
    assert idx.tz is None and idx.dtype == "datetime64[ns]"
    assert dims.to_utc_timestamp(pd.Timestamp("2024-01-01 02:00", tz="Europe/Berlin")) == pd.Timestamp("2024-01-01 01:00")
    assert dims.to_utc_timestamp("2024-01-01 02:00") == pd.Timestamp("2024-01-01 02:00")
