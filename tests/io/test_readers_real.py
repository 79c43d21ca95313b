"""Every reader on every matching real data set in ../shared/data/radar (see radar_cases.py).

Fast default: sniff every file (content only), fully read the first and last file of each set.
``slow``: fully read every file and check its timestamp.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import CRS, Transformer
from radar_cases import CASES, Case, sample_files

from nowcast import dims
from nowcast.io import READERS, read_radar, read_radolan_rv, sniff


@functools.lru_cache(maxsize=6)
def _read(path) -> xr.DataArray:
    """Frames are read once per test session (bounded); tests must not modify them."""
    return read_radar(path)


SAMPLES = [pytest.param(name, f, id=f"{name}:{f.name}") for name, case in CASES.items() for f in sample_files(case)]
if not SAMPLES:  # data absent: keep one case so the skip reason is visible
    SAMPLES = [pytest.param("rmi", None, id="no-data")]


def _check_crs(da, case: Case) -> None:
    crs = dims.crs_of(da)
    if "epsg" in case.proj:
        assert crs.to_epsg() == case.proj["epsg"] or crs.equals(CRS.from_epsg(case.proj["epsg"]))
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PROJ-string export warning
        params = crs.to_dict()
    for key, want in case.proj.items():
        got = params.get(key)
        if key == "R" and got is None:  # a sphere may be written as a=b
            got = params.get("a") if params.get("a") == params.get("b") else None
        assert got is not None, f"CRS lacks {key}: {params}"
        if isinstance(want, str):
            assert got == want, (key, got, want)
        else:
            assert float(got) == pytest.approx(float(want), abs=1e-6), (key, got, want)


def _check_frame(da, case: Case, path) -> None:
    assert da.dims == dims.FRAME_DIMS
    assert da.sizes[dims.TIME] == 1
    assert (da.sizes[dims.Y], da.sizes[dims.X]) == case.shape
    assert da.dtype == np.float32
    assert da.attrs["units"] == dims.RAIN_RATE_UNITS
    dims.validate_frames(da)  # float32, monotonic coords, CRS, no negatives
    for key in ("source_format", "source_file", "quantity_as_stored", "product"):
        assert key in da.attrs, key
    assert da.attrs["source_format"] == case.reader
    assert da.attrs["source_file"] == str(path)
    x, y = da[dims.X].values, da[dims.Y].values
    assert np.diff(x) == pytest.approx(case.spacing[0], rel=1e-6)
    assert np.diff(y) == pytest.approx(case.spacing[1], rel=1e-6)  # north-up
    _check_crs(da, case)
    assert pd.Timestamp(da[dims.TIME].values[0]) == case.time_of(path.name)
    v = da.values
    nan_frac = float(np.isnan(v).mean())
    assert case.nan[0] <= nan_frac <= case.nan[1], f"NaN fraction {nan_frac:.3f} not in {case.nan}"
    finite = v[np.isfinite(v)]
    assert finite.size > 0
    assert finite.min() >= 0.0
    assert finite.max() <= case.max_rate
    assert (finite == 0).mean() > 0.3, "most covered cells are observed dry (0), not NaN"


@pytest.mark.parametrize(("name", "path"), SAMPLES)
def test_read_sample(shared_data, name: str, path) -> None:
    if path is None:
        pytest.skip("no radar data found")
    case = CASES[name]
    da = _read(path)
    _check_frame(da, case, path)


@pytest.mark.parametrize("name", list(CASES))
def test_every_file_is_sniffed_from_content(shared_data, name: str) -> None:
    case = CASES[name]
    files = case.files()
    assert len(files) == case.n_files, f"expected {case.n_files} files in {case.folder}, found {len(files)}"
    assert {sniff(f) for f in files} == {case.reader}


@pytest.mark.parametrize("name", list(CASES))
def test_exactly_one_reader_accepts(shared_data, name: str) -> None:
    """Conformance over every registered reader: sniffers are mutually exclusive on real data."""
    from nowcast.io import _load_builtins
    from nowcast.io.base import Source, as_reader

    _load_builtins()
    files = CASES[name].files()
    if not files:
        pytest.skip(f"no files for {name}")
    src = Source.open_path(files[0])
    accepting = [n for n, r in READERS.items() if as_reader(r).accepts(src)]
    assert accepting == [CASES[name].reader]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_read_every_file(shared_data, name: str) -> None:
    case = CASES[name]
    times = []
    for f in case.files():
        da = read_radar(f)
        _check_frame(da, case, f)
        times.append((da.attrs["product"], pd.Timestamp(da[dims.TIME].values[0])))
    assert len(set(times)) == len(times), "duplicate (product, time) in a set"


def test_registry_lists_all_builtin_readers() -> None:
    from nowcast.io import _load_builtins

    _load_builtins()
    assert {c.reader for c in CASES.values()} | {"cf_netcdf"} <= set(READERS.names())
    for name, reader in READERS.items():
        assert reader.name == name and reader.description


# --- format-specific checks on real files --------------------------------------------------


def test_knmi_coverage_and_units(shared_data) -> None:
    f = CASES["knmi"].files()[0]
    da = _read(f)
    assert float(np.isnan(da).mean()) == pytest.approx(0.744, abs=0.01)
    assert "ACCUMULATED" in da.attrs["quantity_as_stored"]
    # grid lower-left corner is the product corner (0 E, 49.362 N) of the file
    tr = Transformer.from_crs(dims.crs_of(da), "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(da.x.values[0] - 500, da.y.values[-1] - 500)
    assert (lon, lat) == pytest.approx((0.0, 49.362), abs=2e-3)


def test_radolan_900_grid_corner_matches_dwd(shared_data) -> None:
    da = _read(CASES["radolan-2014"].files()[0])
    tr = Transformer.from_crs(dims.crs_of(da), "EPSG:4326", always_xy=True)
    # DWD RADOLAN documentation: lower-left corner 3.5889 E 46.9526 N, upper-right 15.7208 E 54.7405 N
    assert tr.transform(da.x.values[0] - 500, da.y.values[-1] - 500) == pytest.approx((3.5889, 46.9526), abs=1e-4)
    assert tr.transform(da.x.values[-1] + 500, da.y.values[0] + 500) == pytest.approx((15.7208, 54.7405), abs=1e-4)


def test_radolan_de1200_grid_matches_dwd_odim(shared_data) -> None:
    rv = _read(CASES["radolan-rv"].files()[0])
    odim = _read(CASES["dwd-odim"].files()[0])
    np.testing.assert_allclose(rv.x.values, odim.x.values)
    np.testing.assert_allclose(rv.y.values, odim.y.values)
    assert dims.crs_of(rv).equals(dims.crs_of(odim))


def test_radolan_products_and_units(shared_data) -> None:
    folder = CASES["radolan-2014"].files()[0].parent
    rw = read_radar(folder / "raa01-rw_10000-1408102050-dwd---bin.gz")
    ry = read_radar(folder / "raa01-ry_10000-1408102050-dwd---bin.gz")
    rx = read_radar(folder / "raa01-rx_10000-1408102050-dwd---bin.gz")
    assert "precision 0.1" in rw.attrs["quantity_as_stored"] and "60 min" in rw.attrs["quantity_as_stored"]
    assert "precision 0.01" in ry.attrs["quantity_as_stored"]
    assert "dBZ" in rx.attrs["quantity_as_stored"]
    # RX (E+00) must not be scaled: max reflectivity-derived rate stays physical
    assert 10 < float(rx.max()) < 500
    # RY (5-min, mm) and RX (dBZ) of the same time see rain in the same places
    wet_ry, wet_rx = ry.values > 1, rx.values > 1
    assert (wet_ry & wet_rx).sum() / wet_ry.sum() > 0.5


def test_radolan_rv_all_leads(shared_data) -> None:
    rv = read_radolan_rv(CASES["radolan-rv"].files()[0])
    assert rv.dims == (dims.LEAD_TIME, dims.Y, dims.X)
    assert rv.shape == (25, 1200, 1100)
    leads = pd.to_timedelta(rv[dims.LEAD_TIME].values)
    assert list(leads) == [pd.Timedelta(minutes=5 * i) for i in range(25)]
    assert pd.Timestamp(rv[dims.INIT_TIME].values) == pd.Timestamp("2022-10-18 07:00")
    assert pd.Timestamp(rv[dims.TIME].values[-1]) == pd.Timestamp("2022-10-18 09:00")
    assert rv.dtype == np.float32
    finite = rv.values[np.isfinite(rv.values)]
    assert finite.min() >= 0 and finite.max() < 500
    # read_radar on the archive gives the analysis (lead 0)
    first = _read(CASES["radolan-rv"].files()[0])
    np.testing.assert_array_equal(first.values[0], rv.values[0])


def test_opera_cirrus_reads_dbzh_not_quality(shared_data) -> None:
    da = _read(CASES["opera-cirrus"].files()[0])
    assert da.attrs["quantity_as_stored"] == "DBZH"
    with pytest.raises(Exception, match="QIND|no usable quantity"):
        read_radar(CASES["opera-cirrus"].files()[0], quantity="QIND")


def test_opera_odyssey_outliers_masked(shared_data) -> None:
    import h5py

    masked = 0
    for f in CASES["opera-odyssey"].files()[:6]:
        with h5py.File(f) as h:
            raw = h["dataset1/data1/data"][()]
        da = read_radar(f)
        assert da.attrs["outliers_masked"] == int((raw > 500).sum())  # isolated > 500 mm/h -> NaN
        assert float(da.max()) <= 500
        masked += da.attrs["outliers_masked"]
    assert masked > 0  # the set does contain such outliers


def test_perser_range_circle_semantics(shared_data) -> None:
    da = _read(CASES["perser-xband"].files()[0])
    r = np.hypot(*np.meshgrid(da.x.values, da.y.values))
    v = da.values[0]
    assert np.isnan(v[r > 120_000]).all()  # outside the range circle: no coverage
    # inside: NaN in the file = no echo -> 0; only the > 500 mm/h outliers are NaN there
    assert int(np.isnan(v[r < 119_000]).sum()) == da.attrs["outliers_masked"]
    assert (v[r < 119_000] == 0).mean() > 0.8
    # the radar site (centre) is at the file's where/lat, lon
    tr = Transformer.from_crs(dims.crs_of(da), "EPSG:4326", always_xy=True)
    assert tr.transform(0.0, 0.0) == pytest.approx((9.12288, 39.2715), abs=1e-4)


def test_unica_png_circle_and_location(shared_data) -> None:
    f = CASES["unica-xband"].files()[0]
    da = _read(f)
    assert da.attrs["time_from"] == "file name"
    v = da.values[0]
    assert np.isnan(v[0, 0]) and np.isnan(v[-1, -1])  # corners outside the coverage circle
    assert np.isfinite(v[512, 512])
    tr = Transformer.from_crs(dims.crs_of(da), "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(float(da.x.mean()), float(da.y.mean()))
    assert (lon, lat) == pytest.approx((9.109, 39.229), abs=0.01)  # Cagliari


def test_mch_saturation_value(shared_data) -> None:
    maxima = [float(read_radar(f).max()) for f in CASES["mch"].files()[:40:8]]
    assert max(maxima) <= 9.63 * 12 + 0.1


def test_mrms_full_resolution_and_missing(shared_data) -> None:
    da = _read(CASES["mrms"].files()[0])
    assert da.shape == (1, 3500, 7000)  # not downsampled (pysteps' default window_size=4 would give 875x1750)
    assert da.x.values[0] == pytest.approx(-129.995) and da.y.values[0] == pytest.approx(54.995)
    assert float(np.isnan(da).mean()) == pytest.approx(0.358, abs=0.01)  # -3 = no coverage


def test_opera_2km_products_share_one_grid(shared_data) -> None:
    """ODYSSEY (UL corner exact) and NIMBUS (corner off by 2.5 m in the file) snap to the same grid."""
    from nowcast.grid import Grid

    odyssey = Grid.of(_read(CASES["opera-odyssey"].files()[0]))
    nimbus = Grid.of(read_radar(CASES["opera-nimbus"].files()[0]))
    assert odyssey == nimbus
    assert odyssey.x[0] == 1000.0 and odyssey.y[0] == -1000.0


def test_unica_png_no_echo_is_lost_at_the_circle_edge(shared_data) -> None:
    """Every echo pixel (alpha > 127) of a sample of images lies inside the coverage circle."""
    from PIL import Image

    for f in CASES["unica-xband"].files()[::40]:
        echo = np.asarray(Image.open(f))[..., 1] > 127
        da = read_radar(f)
        assert np.isfinite(da.values[0][echo]).all()
