"""Unit conversions, each checked against its inverse and against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nowcast import dims, transforms

RATES = np.array([0.05, 0.1, 1.0, 5.0, 12.5, 100.0, 300.0])


def test_marshall_palmer_known_values() -> None:
    # Z = 200 R^1.6: R = 1 mm/h -> 10 log10(200) = 23.0103 dBZ
    assert transforms.rainrate_to_dbz(np.float64(1.0)) == pytest.approx(23.0103, abs=1e-4)
    assert transforms.dbz_to_rainrate(np.float64(23.0103)) == pytest.approx(1.0, rel=1e-4)
    # 40 dBZ: (1e4 / 200) ** (1/1.6) = 11.53 mm/h
    assert transforms.dbz_to_rainrate(np.float64(40.0)) == pytest.approx((1e4 / 200) ** (1 / 1.6))


@pytest.mark.parametrize("zr", [dims.MARSHALL_PALMER, dims.ZRRelation(a=300.0, b=1.4), dims.ZRRelation(a=223.0, b=1.53)])
def test_dbz_rainrate_round_trip(zr: dims.ZRRelation) -> None:
    dbz = transforms.rainrate_to_dbz(RATES, zr)
    np.testing.assert_allclose(transforms.dbz_to_rainrate(dbz, zr), RATES, rtol=1e-12)
    d = np.linspace(-10, 65, 31)
    np.testing.assert_allclose(transforms.rainrate_to_dbz(transforms.dbz_to_rainrate(d, zr), zr), d, atol=1e-10)


def test_custom_zr_differs_from_mp() -> None:
    r_mp = transforms.dbz_to_rainrate(np.float64(35.0))
    r_c = transforms.dbz_to_rainrate(np.float64(35.0), dims.ZRRelation(a=300.0, b=1.4))
    assert r_c == pytest.approx((10 ** 3.5 / 300.0) ** (1 / 1.4))
    assert r_c != pytest.approx(r_mp)


def test_dry_threshold_and_floor() -> None:
    r = transforms.dbz_to_rainrate(np.array([-5.0, 0.0, 10.0]), dry_dbz=0.0)
    assert r[0] == 0.0 and r[1] > 0 and r[2] > r[1]
    d = transforms.rainrate_to_dbz(np.array([0.0, 1.0]), floor_dbz=-10.0)
    assert d[0] == -10.0 and d[1] == pytest.approx(23.0103, abs=1e-4)
    with np.errstate(divide="ignore"):
        assert np.isneginf(transforms.rainrate_to_dbz(np.array([0.0]))[0])


@pytest.mark.parametrize("interval", ["5min", "10min", pd.Timedelta(hours=1), "15min"])
def test_accumulation_rate_round_trip(interval) -> None:
    acc = transforms.rainrate_to_accumulation(RATES, interval)
    np.testing.assert_allclose(transforms.accumulation_to_rainrate(acc, interval), RATES)
    hours = pd.Timedelta(interval).total_seconds() / 3600
    np.testing.assert_allclose(acc, RATES * hours)


def test_accumulation_known_values_and_bad_interval() -> None:
    assert transforms.accumulation_to_rainrate(np.float64(1.5), "5min") == pytest.approx(18.0)
    assert transforms.accumulation_to_rainrate(np.float64(2.0), "10min") == pytest.approx(12.0)
    for bad in ("0min", "-5min"):
        with pytest.raises(ValueError, match="interval must be positive"):
            transforms.accumulation_to_rainrate(np.float64(1.0), bad)
        with pytest.raises(ValueError, match="interval must be positive"):
            transforms.rainrate_to_accumulation(np.float64(1.0), bad)


def test_scaled_round_trip() -> None:
    r = np.concatenate([[0.0], RATES])
    s = transforms.rainrate_to_scaled(r)
    assert s[0] == 0.0 and np.all(np.diff(s) > 0)
    np.testing.assert_allclose(transforms.scaled_to_rainrate(s), r, atol=1e-12)
    assert transforms.scaled_to_rainrate(np.array([-1.0]))[0] == 0.0  # negatives clip to dry
    np.testing.assert_allclose(transforms.scaled_to_rainrate(transforms.rainrate_to_scaled(r, 0.5), 0.5), r, atol=1e-12)


def test_nan_is_preserved_everywhere() -> None:
    x = np.array([np.nan, 1.0])
    with np.errstate(invalid="ignore"):
        for out in (
            transforms.dbz_to_rainrate(x, dry_dbz=0.0),
            transforms.rainrate_to_dbz(x, floor_dbz=-10.0),
            transforms.accumulation_to_rainrate(x, "5min"),
            transforms.rainrate_to_accumulation(x, "5min"),
            transforms.rainrate_to_scaled(x),
            transforms.scaled_to_rainrate(x),
        ):
            assert np.isnan(out[0]) and np.isfinite(out[1])


def test_xarray_in_xarray_out() -> None:
    da = xr.DataArray(np.array([[np.nan, 0.0], [1.0, 10.0]]), dims=("y", "x"), coords={"x": [0, 1], "y": [1, 0]})
    dbz = transforms.rainrate_to_dbz(da, floor_dbz=-10.0)
    assert isinstance(dbz, xr.DataArray) and dbz.dims == ("y", "x")
    back = transforms.dbz_to_rainrate(dbz, dry_dbz=-5.0)
    assert isinstance(back, xr.DataArray)
    np.testing.assert_allclose(back.values, [[np.nan, 0.0], [1.0, 10.0]], rtol=1e-12)
    s = transforms.scaled_to_rainrate(transforms.rainrate_to_scaled(da))
    assert isinstance(s, xr.DataArray)
    np.testing.assert_allclose(s.values, da.values, atol=1e-12)


def test_float32_input_stays_close() -> None:
    r = RATES.astype(np.float32)
    back = transforms.dbz_to_rainrate(transforms.rainrate_to_dbz(r))
    np.testing.assert_allclose(back, r, rtol=1e-5)
