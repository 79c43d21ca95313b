"""The product-configured ``gridded`` reader: hand-made files, the two worked examples on real
data (they must reproduce the dedicated KNMI and Perser readers), one-line errors naming the
product field, and ``nowcast import --product``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from nowcast import dims, transforms
from nowcast.config import ConfigError
from nowcast.grid import Grid
from nowcast.io import EXAMPLES, READERS, ReaderError, read_radar, sniff
from nowcast.io.gridded import Product, load_product

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = ROOT / "configs" / "products"

TOY = """
[product]
name = "toy dBZ"

[data]
dataset = "scan/dbz"
units = "dBZ"
gain = 0.5
offset = -32.0
nodata = 255
undetect = 0
zr = { a = 300.0, b = 1.4 }
dry_dbz = 5.0

[grid]
crs = "EPSG:3035"
shape = [3, 4]
extent = [4000000, 3000000, 4004000, 3003000]

[time]
pattern = "toy_%Y%m%d_%H%M.h5"
offset = "5min"
"""


def write_toy(folder: Path, name: str = "toy_20240601_1200.h5", raw: np.ndarray | None = None) -> Path:
    raw = np.array([[0, 64, 100, 255], [74, 150, 0, 255], [255, 255, 90, 160]], dtype=np.uint8) if raw is None else raw
    path = folder / name
    with h5py.File(path, "w") as f:
        f.create_dataset("scan/dbz", data=raw)
    return path


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, Product]:
    (tmp_path / "toy.toml").write_text(TOY)
    return write_toy(tmp_path), load_product(tmp_path / "toy.toml")


def test_toy_hdf5_values_flags_grid_and_time(toy) -> None:  # noqa: ANN001
    path, prod = toy
    da = read_radar(path, reader="gridded", product=prod)
    assert da.dims == (dims.TIME, dims.Y, dims.X) and da.dtype == np.float32
    assert pd.Timestamp(da[dims.TIME].values[0]) == pd.Timestamp("2024-06-01T12:05")  # name time + offset
    np.testing.assert_allclose(da[dims.X].values, [4000500, 4001500, 4002500, 4003500])
    np.testing.assert_allclose(da[dims.Y].values, [3002500, 3001500, 3000500])  # row 0 = north edge
    assert dims.crs_of(da).to_epsg() == 3035
    v = da.values[0]
    zr = dims.ZRRelation(a=300.0, b=1.4)
    # by hand: dBZ = 0.5 * DN - 32; 255 -> NaN; 0 (undetect) -> 0; below 5 dBZ -> 0
    assert np.isnan(v[0, 3]) and np.isnan(v[1, 3]) and np.isnan(v[2, 0]) and np.isnan(v[2, 1])
    assert v[0, 0] == 0 and v[1, 2] == 0
    assert v[0, 1] == 0  # 64 -> 0 dBZ < 5: dry
    assert v[1, 0] == pytest.approx(transforms.dbz_to_rainrate(5.0, zr), rel=1e-6)  # 74 -> 5 dBZ
    assert v[0, 2] == pytest.approx(transforms.dbz_to_rainrate(18.0, zr), rel=1e-6)
    assert v[1, 1] == pytest.approx(transforms.dbz_to_rainrate(43.0, zr), rel=1e-6)
    assert v[2, 3] == pytest.approx(transforms.dbz_to_rainrate(48.0, zr), rel=1e-6)
    assert da.attrs["source_format"] == "gridded" and da.attrs["product"] == "toy dBZ"


@pytest.mark.parametrize("nc_format", ["NETCDF4", "NETCDF3_CLASSIC"])
def test_netcdf_lower_origin_mm_per_interval_and_transform(tmp_path: Path, nc_format: str) -> None:
    import netCDF4

    acc = np.array([[0.0, 0.5, 1.0], [2.0, -1.0, 3.0]], dtype=np.float32)  # row 0 = SOUTH edge
    path = tmp_path / "acc-2023-001-0010.nc"
    with netCDF4.Dataset(path, "w", format=nc_format) as nc:
        nc.createDimension("r", 2)
        nc.createDimension("c", 3)
        nc.createVariable("precip", "f4", ("r", "c"))[:] = acc
    (tmp_path / "p.yaml").write_text(
        "product: {name: acc10}\n"
        "data: {dataset: precip, units: mm, interval: 10min, nodata: -1.0}\n"
        "grid: {crs: 'EPSG:32632', shape: [2, 3], transform: [500000, 1000, 0, 5000000, 0, 1000]}\n"
        "time: {pattern: 'acc-%Y-%j-%H%M.nc'}\n"
    )
    da = read_radar(path, reader="gridded", product=load_product(tmp_path / "p.yaml"))
    assert pd.Timestamp(da[dims.TIME].values[0]) == pd.Timestamp("2023-01-01T00:10")
    # transform with dy > 0: row 0 is the south edge; the frame comes out north-up
    np.testing.assert_allclose(da[dims.Y].values, [5001500, 5000500])
    np.testing.assert_allclose(da.values[0], [[12.0, np.nan, 18.0], [0.0, 3.0, 6.0]])


def test_gzipped_file_reads_like_the_plain_one(tmp_path: Path, toy) -> None:  # noqa: ANN001
    import gzip

    path, prod = toy
    gz = tmp_path / "gz"
    gz.mkdir()
    (gz / path.name).write_bytes(gzip.compress(path.read_bytes()))
    a = read_radar(path, reader="gridded", product=prod)
    b = read_radar(gz / path.name, reader="gridded", product=prod)
    np.testing.assert_array_equal(a.values, b.values)
    assert np.isfinite(a.values).sum() == 8


def test_gridded_is_never_sniffed_and_needs_a_product(toy) -> None:  # noqa: ANN001
    path, _ = toy
    with pytest.raises(ReaderError, match="unknown or unsupported format"):
        sniff(path)
    with pytest.raises(ReaderError, match="needs a product"):
        read_radar(path, reader="gridded")
    assert "gridded" in READERS.names()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: write_toy(d, raw=np.zeros((4, 4), dtype=np.uint8)), "grid.shape is [3, 4] but data.dataset 'scan/dbz' is [4, 4]"),
        (lambda d: write_toy(d, raw=np.zeros((2, 3, 4), dtype=np.uint8)), "data.dataset 'scan/dbz' has shape (2, 3, 4)"),
        (lambda d: write_toy(d, name="toy_2024_1200.h5"), "time.pattern 'toy_%Y%m%d_%H%M.h5' does not match the file name"),
        (lambda d: write_toy(d, name="toy_20241301_1200.h5"), "time.pattern"),  # month 13
        (lambda d: _other_dataset(d), "data.dataset 'scan/dbz' is not a dataset in the file (datasets: other)"),
        (lambda d: _text_file(d), "data.format: not an HDF5 or netCDF file"),
    ],
    ids=["shape", "3d", "name", "bad-date", "dataset", "format"],
)
def test_a_file_that_does_not_match_gets_one_line_naming_the_field(tmp_path: Path, change, field: str) -> None:  # noqa: ANN001
    (tmp_path / "toy.toml").write_text(TOY)
    prod = load_product(tmp_path / "toy.toml")
    path = change(tmp_path)
    with pytest.raises(ReaderError) as info:
        read_radar(path, reader="gridded", product=prod)
    msg = str(info.value)
    assert "\n" not in msg and field in msg and str(path) in msg and "toy.toml" in msg, msg


def _other_dataset(d: Path) -> Path:
    p = d / "toy_20240601_1200.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("other", data=np.zeros((3, 4)))
    return p


def _text_file(d: Path) -> Path:
    p = d / "toy_20240601_1200.h5"
    p.write_text("not a radar file\n")
    return p


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace('units = "dBZ"', 'units = "mm"'), "data: Value error, units = 'mm' needs interval"),
        (lambda t: t.replace('crs = "EPSG:3035"', 'crs = "EPSG:99999"'), "grid.crs: Value error, not a CRS pyproj knows"),
        (lambda t: t.replace("extent =", "transform = [0, 1, 0, 0, 0, -1]\nextent ="), "grid: Value error, give exactly one of extent, transform"),
        (lambda t: t.replace("shape = [3, 4]", "shape = [3]"), "grid.shape"),
        (lambda t: t.replace('pattern = "toy_%Y%m%d_%H%M.h5"', 'pattern = "toy_%Y%m%d_%H%q.h5"'), "time.pattern: Value error, unsupported field(s) %q"),
        (lambda t: t.replace('pattern = "toy_%Y%m%d_%H%M.h5"', 'pattern = "toy_%H%M.h5"'), "time.pattern: Value error, pattern needs a year"),
        (lambda t: t.replace("gain = 0.5", "gain = 0.5\nscale = 2"), "data.scale: Extra inputs are not permitted"),
        (lambda t: t.replace('units = "dBZ"', 'units = "inch"'), "data.units"),
    ],
    ids=["interval", "crs", "two-georefs", "shape", "pattern-field", "pattern-year", "unknown-key", "units"],
)
def test_bad_product_files_name_the_field(tmp_path: Path, edit, needle: str) -> None:  # noqa: ANN001
    p = tmp_path / "bad.toml"
    p.write_text(edit(TOY))
    with pytest.raises(ConfigError) as info:
        load_product(p)
    assert needle in str(info.value) and str(p) in str(info.value)


def test_cli_import_with_product_and_one_line_error(tmp_path: Path, toy) -> None:  # noqa: ANN001
    path, _ = toy
    write_toy(tmp_path, name="toy_20240601_1205.h5")
    (tmp_path / "wrong").mkdir()
    bad = write_toy(tmp_path / "wrong", name="toy_20240601_1210.h5", raw=np.zeros((5, 5), dtype=np.uint8))
    store = tmp_path / "s.zarr"
    cmd = [sys.executable, "-m", "cli", "import", str(path), str(tmp_path / "toy_20240601_1205.h5"), str(bad),
           "--product", str(tmp_path / "toy.toml"), "--store", str(store), "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "2 frames written" in r.stdout and "1 failed" in r.stdout, (r.stdout, r.stderr)
    assert f"cannot read radar file {bad}: product {tmp_path / 'toy.toml'}: grid.shape is [3, 4] but data.dataset 'scan/dbz' is [5, 5]" in r.stderr
    from nowcast.store import ObservationStore

    obs = ObservationStore.open(str(store))
    assert obs.grid.shape == (3, 4) and obs.last_complete() == pd.Timestamp("2024-06-01T12:10")
    # a bad product stops before any file is read: one line naming the field
    (tmp_path / "bad.toml").write_text(TOY.replace("shape = [3, 4]", "shape = [3, -4]"))
    r = subprocess.run(cmd[:-5] + ["--product", str(tmp_path / "bad.toml"), "--store", str(tmp_path / "t.zarr"), "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode != 0 and "grid: Value error, shape must be positive" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "t.zarr").exists()


def test_import_help_lists_every_format_with_an_example() -> None:
    from nowcast.io import _load_builtins

    r = subprocess.run([sys.executable, "-m", "cli", "import", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "--product PRODUCT" in r.stdout
    _load_builtins()
    for name in READERS.names():
        assert f"  {name} " in r.stdout, name
        assert EXAMPLES[name] in r.stdout.replace("\n", ""), name  # argparse keeps the epilog lines
    readme = (ROOT / "README.md").read_text()
    for name in READERS.names():
        assert EXAMPLES[name] in readme, f"README lacks the example command of {name}"


# --- the two worked examples on real data (docs/readers.md) ---------------------------------


@pytest.mark.parametrize(
    ("product", "folder", "reader"),
    [("knmi-nl25-rap.toml", ("knmi", "20100826"), "knmi_hdf5"), ("perser-xband.toml", ("perser-xband", "20250416"), "perser_hdf5")],
    ids=["knmi", "perser"],
)
def test_worked_examples_reproduce_the_dedicated_readers(product: str, folder: tuple[str, str], reader: str) -> None:
    from tests.conftest import shared_path

    files = sorted(p for p in shared_path("radar", *folder).iterdir() if p.is_file())
    prod = load_product(PRODUCTS / product)
    for f in files[:: max(1, len(files) // 3)][:3]:
        g = read_radar(f, reader="gridded", product=prod)
        d = read_radar(f)
        assert d.attrs["source_format"] == reader
        assert pd.Timestamp(g[dims.TIME].values[0]) == pd.Timestamp(d[dims.TIME].values[0]), f
        gg, gd = Grid.of(g), Grid.of(d)
        assert gg.shape == gd.shape and gg.crs.equals(gd.crs)
        np.testing.assert_allclose(gg.x, gd.x, atol=1.0)  # KNMI's reader rounds its corner to 10 m
        np.testing.assert_allclose(gg.y, gd.y, atol=1.0)
        np.testing.assert_array_equal(np.isnan(g.values), np.isnan(d.values))
        np.testing.assert_allclose(g.values, d.values, rtol=1e-5, atol=1e-6, equal_nan=True)
        assert np.nanmax(g.values) > 0.5  # raining frames, not an empty comparison


def test_example_commands_point_at_files_of_their_format() -> None:
    from tests.conftest import shared_path

    shared_path("radar")
    for name, cmd in EXAMPLES.items():
        paths = [Path(ROOT, a) for a in cmd.split() if a.startswith("../shared/")]
        if name == "cf_netcdf":
            assert not paths  # the example is the service's own netCDF export
            continue
        (p,) = paths
        first = sorted(f for f in p.rglob("*") if f.is_file())[0] if p.is_dir() else p
        expected = "knmi_hdf5" if name == "gridded" else name  # the gridded example reads KNMI files by hand
        assert sniff(first) == expected, (name, first)
        if name == "gridded":
            assert "--product configs/products/" in cmd and (ROOT / cmd.split("--product ")[1].split()[0]).is_file()
