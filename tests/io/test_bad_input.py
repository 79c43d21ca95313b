"""Bad input -> one ReaderError naming the file and the reason; no other exception type leaks.

Also: content sniffing ignores misleading file names.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from radar_cases import CASES

from nowcast import dims
from nowcast.io import ReaderError, read_radar, sniff

#: one real file per container format (small ones, to keep the default run fast)
FORMATS = ["rmi", "perser-xband", "knmi", "mch", "fmi", "bom", "mrms", "radolan-2014", "radolan-rv", "unica-xband", "fmi-geotiff"]


def _real(name: str) -> Path:
    files = CASES[name].files()
    if not files:
        pytest.skip(f"no files for {name}")
    return files[0]


def _assert_reader_error_or_valid(path: Path) -> None:
    """Corruption that the format cannot detect may still give a frame, but never another exception."""
    try:
        da = read_radar(path)
    except ReaderError as exc:
        assert str(path) in str(exc) and exc.reason
        return
    dims.validate_frames(da)


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.h5"
    with pytest.raises(ReaderError, match="no such file") as ei:
        read_radar(p)
    assert str(p) in str(ei.value)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match="not a regular file"):
        read_radar(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.gif"
    p.write_bytes(b"")
    with pytest.raises(ReaderError, match="empty") as ei:
        sniff(p)
    assert str(p) in str(ei.value)


def test_text_file_is_unknown(tmp_path: Path) -> None:
    p = tmp_path / "radar.h5"
    p.write_text("this is not radar data\n" * 20)
    with pytest.raises(ReaderError, match="unknown or unsupported format") as ei:
        read_radar(p)
    assert str(p) in str(ei.value)


def test_gzipped_text_is_unknown(tmp_path: Path) -> None:
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(b"hello world\n" * 100))
    with pytest.raises(ReaderError, match="gzip-compressed"):
        read_radar(p)


def test_png_that_is_not_radar(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    p = tmp_path / "20200101_1200.png"  # a radar-like name does not help
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    with pytest.raises(ReaderError, match="unknown or unsupported"):
        read_radar(p)


def test_tiff_that_is_not_radar(tmp_path: Path) -> None:
    import tifffile

    p = tmp_path / "201609281600_FINUTM.tif"
    tifffile.imwrite(p, np.zeros((16, 16), np.uint8))
    with pytest.raises(ReaderError, match="unknown or unsupported"):
        read_radar(p)


def test_unknown_reader_name(shared_data, tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match="unknown readers 'nope'; valid: .*odim_hdf5"):
        read_radar(_real("knmi"), reader="nope")


def test_wrong_forced_reader_is_reader_error(shared_data) -> None:
    with pytest.raises(ReaderError):
        read_radar(_real("knmi"), reader="radolan")


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated(shared_data, tmp_path: Path, name: str, keep: float) -> None:
    src = _real(name)
    data = src.read_bytes()
    p = tmp_path / src.name
    p.write_bytes(data[: max(1, int(len(data) * keep))])
    with pytest.raises(ReaderError) as ei:
        read_radar(p)
    assert str(p) in str(ei.value)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("where", ["header", "middle"])
def test_corrupt(shared_data, tmp_path: Path, name: str, where: str) -> None:
    src = _real(name)
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(42)
    n = min(64, len(data) // 4)
    start = 8 if where == "header" else len(data) // 2
    data[start : start + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    p = tmp_path / src.name
    p.write_bytes(bytes(data))
    _assert_reader_error_or_valid(p)


@pytest.mark.parametrize("name", FORMATS)
def test_random_bytes_with_real_magic(tmp_path: Path, name: str, shared_data) -> None:
    """The first bytes of a real file followed by garbage: the sniffer may accept, the reader must fail cleanly."""
    src = _real(name)
    head = src.read_bytes()[:16]
    rng = np.random.default_rng(1)
    p = tmp_path / ("garbage" + src.suffix)
    p.write_bytes(head + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ReaderError):
        read_radar(p)


@pytest.mark.parametrize(
    ("name", "misleading"),
    [("knmi", "radar.gif"), ("radolan-2014", "composite.h5"), ("mch", "image.png"), ("fmi", "data.nc"),
     ("bom", "file.grib2"), ("perser-xband", "x.tif"), ("rmi", "no_extension")],
)
def test_content_sniffing_ignores_names(shared_data, tmp_path: Path, name: str, misleading: str) -> None:
    src = _real(name)
    p = tmp_path / misleading
    shutil.copy(src, p)
    assert sniff(p) == CASES[name].reader
    a, b = read_radar(src), read_radar(p)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.time.values[0] == b.time.values[0]


def test_compressed_copy_reads_the_same(shared_data, tmp_path: Path) -> None:
    """gzip / bz2 are detected by magic bytes, whatever the name."""
    import bz2

    src = _real("knmi")
    for comp, data in (("gzip", gzip.compress(src.read_bytes())), ("bz2", bz2.compress(src.read_bytes()))):
        p = tmp_path / f"{comp}.h5"
        p.write_bytes(data)
        a, b = read_radar(src), read_radar(p)
        np.testing.assert_array_equal(a.values, b.values)


def test_unica_png_renamed_needs_time(shared_data, tmp_path: Path) -> None:
    """PNG has no metadata: a renamed file cannot be dated unless the caller passes time=."""
    import pandas as pd

    src = _real("unica-xband")
    p = tmp_path / "renamed.png"
    shutil.copy(src, p)
    assert sniff(p) == "unica_png"
    with pytest.raises(ReaderError, match="time="):
        read_radar(p)
    da = read_radar(p, time="2018-05-05 11:45")
    assert pd.Timestamp(da.time.values[0]) == pd.Timestamp("2018-05-05 11:45")
    assert da.attrs["time_from"] == "caller"
