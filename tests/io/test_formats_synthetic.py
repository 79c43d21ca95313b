"""Format details checked on small synthetic files with known values (seeded, built in tmp_path)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nowcast import dims, transforms
from nowcast.io import READERS, RadarReader, ReaderError, read_radar, sniff
from nowcast.io.base import Source
from nowcast.io.radolan import parse_header

LAEA = "+proj=laea +lat_0=55.0 +lon_0=10.0 +x_0=1950000.0 +y_0=-2100000.0 +units=m +ellps=WGS84"


# --- ODIM ----------------------------------------------------------------------------------


def _write_odim(path: Path, raw: np.ndarray, quantity: str, what_at: str, *, gain=1.0, offset=0.0,
                nodata=255.0, undetect=0.0, extra_qind_first: bool = False, start="120000", end="120500") -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["Conventions"] = np.bytes_("ODIM_H5/V2_2")
        w = f.create_group("what")
        w.attrs.update(date=np.bytes_("20240101"), time=np.bytes_(end), object=np.bytes_("COMP"))
        wh = f.create_group("where")
        ny, nx = raw.shape
        wh.attrs.update(projdef=np.bytes_(LAEA), xsize=nx, ysize=ny, xscale=2000.0, yscale=2000.0,
                        UL_lon=-39.5357864125034, UL_lat=67.02283275830867)
        n = 1
        if extra_qind_first:
            g = f.create_group("dataset1")
            g.create_group("data1").create_dataset("data", data=np.ones_like(raw))
            g["data1"].create_group("what").attrs.update(quantity=np.bytes_("QIND"), gain=1.0, offset=0.0)
            n = 2
        g = f.create_group(f"dataset{n}")
        g.create_group("data1").create_dataset("data", data=raw)
        dw = g.create_group("what")
        dw.attrs.update(startdate=np.bytes_("20240101"), starttime=np.bytes_(start), enddate=np.bytes_("20240101"),
                        endtime=np.bytes_(end), product=np.bytes_("COMP"))
        target = dw if what_at == "dataset" else g["data1"].create_group("what")
        target.attrs.update(quantity=np.bytes_(quantity), gain=gain, offset=offset, nodata=nodata, undetect=undetect)


@pytest.mark.parametrize("what_at", ["dataset", "data"])
def test_odim_gain_offset_nodata_undetect(tmp_path: Path, what_at: str) -> None:
    raw = np.array([[0, 10, 255], [20, 0, 100]], dtype=np.uint8)
    p = tmp_path / "odim.h5"
    _write_odim(p, raw, "RATE", what_at, gain=0.5, offset=1.0, extra_qind_first=True)
    assert sniff(p) == "odim_hdf5"
    da = read_radar(p)
    expected = np.array([[0.0, 6.0, np.nan], [11.0, 0.0, 51.0]], dtype=np.float32)
    np.testing.assert_array_equal(da.values[0], expected)
    assert da.attrs["quantity_as_stored"] == "RATE"  # not the QIND dataset that comes first
    assert pd.Timestamp(da.time.values[0]) == pd.Timestamp("2024-01-01 12:05")
    # OPERA upper-left corner projects to (0, 0): first centre is half a cell in
    assert da.x.values[0] == pytest.approx(1000.0) and da.y.values[0] == pytest.approx(-1000.0)


def test_odim_acrr_is_divided_by_interval(tmp_path: Path) -> None:
    raw = np.array([[0, 10], [20, 65535]], dtype=np.uint16)
    p = tmp_path / "acrr.h5"
    _write_odim(p, raw, "ACRR", "data", gain=0.1, nodata=65535, start="110000", end="120000")
    v = read_radar(p).values[0]
    np.testing.assert_allclose(v, [[0.0, 1.0], [2.0, np.nan]])  # 1 h accumulation: mm == mm/h


def test_odim_dbzh_marshall_palmer(tmp_path: Path) -> None:
    dbz = np.array([[-9999000.0, -8888000.0], [23.0, 40.0]])
    p = tmp_path / "dbzh.h5"
    _write_odim(p, dbz, "DBZH", "data", nodata=-9999000.0, undetect=-8888000.0)
    v = read_radar(p).values[0]
    assert np.isnan(v[0, 0]) and v[0, 1] == 0.0
    np.testing.assert_allclose(v[1], transforms.dbz_to_rainrate(np.array([23.0, 40.0])), rtol=1e-5)
    custom = dims.ZRRelation(a=300, b=1.4)
    v2 = read_radar(p, zr=custom).values[0]
    np.testing.assert_allclose(v2[1], transforms.dbz_to_rainrate(np.array([23.0, 40.0]), custom), rtol=1e-5)


def test_odim_without_rain_quantity(tmp_path: Path) -> None:
    p = tmp_path / "vrad.h5"
    _write_odim(p, np.zeros((2, 2), np.uint8), "VRADH", "data")
    with pytest.raises(ReaderError, match="no usable quantity.*VRADH"):
        read_radar(p)


# --- RADOLAN -------------------------------------------------------------------------------


def _radolan(product: str, values: np.ndarray, pr: str, interval: int, dtype: str, *, extra: str = "") -> bytes:
    rows, cols = values.shape
    body = values[::-1].astype(dtype).tobytes()  # RADOLAN stores the south row first
    head = (f"{product}102050100000814BY{len(body) + 200:7d}VS 3SW   2.13.1PR {pr}INT{interval:4d}"
            f"GP{rows:4d}x{cols:4d}{extra}MS 10<boo,ros> ").encode()
    return head + b"\x03" + body


def _grid900(fill: int) -> np.ndarray:
    return np.full((900, 900), fill, dtype=np.uint16)


def test_radolan_flag_bits(tmp_path: Path) -> None:
    v = _grid900(0)
    v[0, 0] = 4096  # bit 12 'secondary' with value 0 -> 0 mm, NOT 409.6
    v[0, 1] = 4096 | 5  # secondary, 0.5 mm
    v[0, 2] = 0x2000 | 2500  # nodata
    v[0, 3] = 0x4000 | 7  # negative -> 0 for rain
    v[0, 4] = 0x8000 | 9  # clutter -> NaN
    v[0, 5] = 4095  # largest value: 409.5 mm/h
    v[0, 6] = 123
    p = tmp_path / "rw.bin"
    p.write_bytes(gzip.compress(_radolan("RW", v, "E-01", 60, "<u2")))
    assert sniff(p) == "radolan"
    da = read_radar(p)
    row = da.values[0, 0, :7]  # north-up: first row of the array is the northern one
    np.testing.assert_allclose(row, [0.0, 0.5, np.nan, 0.0, np.nan, 409.5, 12.3], rtol=1e-6)
    assert pd.Timestamp(da.time.values[0]) == pd.Timestamp("2014-08-10 20:50")


def test_radolan_precision_e_minus_02_and_interval(tmp_path: Path) -> None:
    v = _grid900(0)
    v[450, 450] = 150  # 1.50 mm in 5 min -> 18 mm/h
    p = tmp_path / "ry"
    p.write_bytes(_radolan("RY", v, "E-02", 5, "<u2"))
    assert float(read_radar(p).values[0, 450, 450]) == pytest.approx(18.0)


def test_radolan_rx_rvp6_units_e_plus_00(tmp_path: Path) -> None:
    v = np.zeros((900, 900), np.uint8)
    v[0, :4] = [130, 250, 249, 65]  # 32.5 dBZ, nodata, clutter, 0 dBZ
    p = tmp_path / "rx"
    p.write_bytes(_radolan("RX", v, "E+00", 5, "u1"))
    row = read_radar(p).values[0, 0, :4]
    assert row[0] == pytest.approx(float(transforms.dbz_to_rainrate(np.float64(32.5))), rel=1e-5)
    assert np.isnan(row[1]) and np.isnan(row[2])
    assert row[3] == pytest.approx(float(transforms.dbz_to_rainrate(np.float64(0.0))), rel=1e-5)


def test_radolan_header_variants() -> None:
    h = parse_header(b"RE180700100001022BY   1620201VS 5SW P300001HPR E-03INT  60GP 900x 900VV 030MF 00000008QN 016MS 5<a,b>\x03")
    assert h.product == "RE" and h.time == pd.Timestamp("2022-10-18 07:00")
    assert h.precision == pytest.approx(1e-3) and h.interval == pd.Timedelta(minutes=60)
    assert h.lead == pd.Timedelta(minutes=30) and h.shape == (900, 900)
    assert h.fields["SW"] == "P300001H" and h.fields["QN"] == "016"
    h2 = parse_header(b"WX102050100000814BY 990134VS 3SW   2.13.1PR E+00INT   5GP1100x 900MS 3<x>\x03")
    assert h2.precision == 1.0 and h2.shape == (1100, 900)


def test_radolan_truncated_data(tmp_path: Path) -> None:
    p = tmp_path / "rw"
    p.write_bytes(_radolan("RW", _grid900(0), "E-01", 60, "<u2")[:5000])
    with pytest.raises(ReaderError, match="truncated RADOLAN data"):
        read_radar(p)


def test_radolan_unknown_grid(tmp_path: Path) -> None:
    p = tmp_path / "rw"
    p.write_bytes(_radolan("RW", np.zeros((10, 20), np.uint16), "E-01", 60, "<u2"))
    with pytest.raises(ReaderError, match="unknown RADOLAN grid 10x20"):
        read_radar(p)


# --- CF netCDF round trip ------------------------------------------------------------------


def _frame() -> xr.DataArray:
    rng = np.random.default_rng(7)
    v = rng.gamma(0.5, 2.0, (1, 40, 50)).astype(np.float32)
    v[0, :5] = np.nan
    v[0, 10:15] = 0.0
    x = 1000.0 + 2000.0 * np.arange(50)
    y = -1000.0 - 2000.0 * np.arange(40)
    return dims.make_frames(v, ["2024-11-26 01:05"], x, y, LAEA)


@pytest.mark.parametrize("compress", [False, True])
def test_cf_netcdf_round_trip_of_own_output(tmp_path: Path, compress: bool) -> None:
    da = _frame()
    p = tmp_path / "frame.nc"
    da.to_netcdf(p)
    if compress:
        p.write_bytes(gzip.compress(p.read_bytes()))
    assert sniff(p) == "cf_netcdf"
    back = read_radar(p)
    np.testing.assert_array_equal(back.values, da.values)
    np.testing.assert_array_equal(back.x.values, da.x.values)
    np.testing.assert_array_equal(back.y.values, da.y.values)
    assert back.time.values[0] == da.time.values[0]
    assert dims.crs_of(back).equals(dims.crs_of(da))
    assert back.attrs["source_format"] == "cf_netcdf"


def test_cf_netcdf_accumulation_and_km(tmp_path: Path) -> None:
    acc = xr.Dataset(
        {
            "precip": (("y", "x"), np.array([[0.0, 1.0], [2.5, np.nan]], np.float32),
                       {"standard_name": "precipitation_amount", "units": "kg m-2", "grid_mapping": "crs",
                        "cell_methods": "time: sum (interval: 10 minutes)"}),
            "crs": ((), 0, {"grid_mapping_name": "albers_conical_equal_area", "standard_parallel": [-26.2, -29.3],
                            "longitude_of_central_meridian": 153.24, "latitude_of_projection_origin": -27.7,
                            "false_easting": 0.0, "false_northing": 0.0}),
        },
        coords={"x": ("x", [0.25, 0.75], {"units": "km"}), "y": ("y", [0.75, 0.25], {"units": "km"}),
                "time": pd.Timestamp("2020-10-31 00:10")},
    )
    p = tmp_path / "acc.nc"
    acc.to_netcdf(p)
    da = read_radar(p)
    np.testing.assert_allclose(da.values[0], [[0.0, 6.0], [15.0, np.nan]])
    np.testing.assert_allclose(da.x.values, [250.0, 750.0])
    assert pd.Timestamp(da.time.values[0]) == pd.Timestamp("2020-10-31 00:10")


def test_cf_netcdf_without_rain_variable_is_unknown(tmp_path: Path) -> None:
    p = tmp_path / "t.nc"
    xr.Dataset({"temperature": (("y", "x"), np.zeros((2, 2)), {"units": "K"})}).to_netcdf(p)
    with pytest.raises(ReaderError, match="unknown or unsupported"):
        read_radar(p)


# --- protocol, registry and plug-ins -------------------------------------------------------


def test_every_registered_reader_follows_the_protocol() -> None:
    from nowcast.io import _load_builtins

    _load_builtins()
    for _, reader in READERS.items():
        assert isinstance(reader, RadarReader)


class _ToyReader:
    """A third-party reader: 'TOY1' magic, 4x4 frame of ones."""

    name = "toy"
    description = "toy format for the plug-in test"

    def accepts(self, src: Source) -> bool:
        return src.head.startswith(b"TOY1")

    def read(self, src: Source, **options: object) -> xr.DataArray:
        return dims.make_frames(np.ones((4, 4)), ["2024-01-01"], np.arange(4.0), -np.arange(4.0), "EPSG:3035")


def test_third_party_reader_plugs_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nowcast.io import _load_builtins

    _load_builtins()
    monkeypatch.setitem(READERS._items, "toy", _ToyReader())
    p = tmp_path / "a.dat"
    p.write_bytes(b"TOY1" + b"\0" * 10)
    assert sniff(p) == "toy"
    assert float(read_radar(p).sum()) == 16.0


def test_failing_plugin_reader_becomes_reader_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(_ToyReader):
        def read(self, src: Source, **options: object) -> xr.DataArray:
            raise KeyError("boom")

    from nowcast.io import _load_builtins

    _load_builtins()
    monkeypatch.setitem(READERS._items, "toy", Broken())
    p = tmp_path / "a.dat"
    p.write_bytes(b"TOY1")
    with pytest.raises(ReaderError, match=r"a\.dat.*toy: KeyError"):
        read_radar(p)
