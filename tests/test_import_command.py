"""`nowcast import`: exit status when files fail, cadence of a new store from the archive (issue 13, item 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli import main
from nowcast import dims
from nowcast.grid import Grid
from nowcast.store import ObservationStore

GRID = Grid.from_bounds("EPSG:3035", 4_000_000, 2_500_000, 4_040_000, 2_530_000, 1000)
T0 = pd.Timestamp("2024-06-01 12:00")


def archive(folder: Path, step: str, n: int) -> list[pd.Timestamp]:
    """``n`` CF netCDF frames ``step`` apart (the project's own frames round-trip through the reader)."""
    folder.mkdir(parents=True, exist_ok=True)
    times = [T0 + i * pd.Timedelta(step) for i in range(n)]
    for i, t in enumerate(times):
        v = np.full(GRID.shape, float(i), np.float32)
        dims.make_frames(v, [t], GRID.x, GRID.y, GRID.crs_wkt).to_netcdf(folder / f"frame_{t:%Y%m%d%H%M}.nc")
    return times


def test_six_minute_archive_makes_a_six_minute_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    times = archive(tmp_path / "arc", "6min", 8)
    store = tmp_path / "s.zarr"
    assert main(["import", str(tmp_path / "arc"), "--store", str(store), "--no-progress"]) == 0
    assert "8 frames written, 0 skipped (already stored), 0 failed" in capsys.readouterr().out
    s = ObservationStore.open(str(store))
    assert s.cadence == pd.Timedelta("6min")
    assert list(s.times()) == times
    np.testing.assert_array_equal(s.read_times(times)[dims.RAIN_RATE][:, 3, 3].values, np.arange(8, dtype=np.float32))


def test_cadence_flag_and_a_short_archive(tmp_path: Path) -> None:
    archive(tmp_path / "arc", "10min", 2)
    assert main(["import", str(tmp_path / "arc"), "--store", str(tmp_path / "a.zarr"), "--no-progress"]) == 0
    assert ObservationStore.open(str(tmp_path / "a.zarr")).cadence == pd.Timedelta("10min")
    assert main(["import", str(tmp_path / "arc"), "--store", str(tmp_path / "b.zarr"), "--cadence", "5min", "--no-progress"]) == 0
    assert ObservationStore.open(str(tmp_path / "b.zarr")).cadence == pd.Timedelta("5min")


def test_any_failed_file_makes_the_exit_status_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive(tmp_path / "arc", "6min", 4)
    (tmp_path / "arc" / "frame_broken.nc").write_bytes(b"CDF\x01" + bytes(40))
    store = tmp_path / "s.zarr"
    assert main(["import", str(tmp_path / "arc"), "--store", str(store), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "4 frames written, 0 skipped (already stored), 1 failed" in captured.out
    assert "frame_broken.nc" in captured.err
    assert len(ObservationStore.open(str(store)).times()) == 4


def test_an_archive_off_the_cadence_of_an_existing_store_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 6-minute archive into an existing 5-minute store: the off-cadence frames are failures."""
    ObservationStore.create(str(tmp_path / "s.zarr"), GRID, cadence="5min")
    archive(tmp_path / "arc", "6min", 6)  # 12:00 (on the 5-min cadence), 12:06, ..., 12:30 (on it)
    assert main(["import", str(tmp_path / "arc"), "--store", str(tmp_path / "s.zarr"), "--no-progress"]) == 1
    assert "2 frames written, 0 skipped (already stored), 4 failed" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "arc"), "--store", str(tmp_path / "s.zarr"), "--cadence", "6min", "--no-progress"]) == 1
    assert "differs from --cadence" in capsys.readouterr().err


def test_the_source_fingerprint_names_the_files_not_the_stored_bits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every import records the files it stored frames from (SHA-256, reader, options, times);
    the source fingerprint hashes that record: equal for two stores made from the same files even
    when their stored values differ in the last bits (as on another CPU), different for other
    files or other options, absent while some frame is not covered by the record."""
    from nowcast.provenance import data_fingerprint, source_fingerprint

    times = archive(tmp_path / "arc", "5min", 4)
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    for url in (a, b):
        assert main(["import", str(tmp_path / "arc"), "--store", url, "--no-progress"]) == 0
    sa, sb = ObservationStore.open(a), ObservationStore.open(b)
    record = sa.imported_files()
    assert len(record) == 4 and {e["reader"] for e in record.values()} == {"cf_netcdf"}
    assert sorted(t for e in record.values() for t in e["times"]) == [t.strftime("%Y-%m-%dT%H:%M:%S") for t in times]
    fp = source_fingerprint(sa)
    assert fp is not None and fp == source_fingerprint(sb) and data_fingerprint(sa) == data_fingerprint(sb)
    # store b's values move by one unit in the last place (another CPU's reader): content differs, sources do not
    bumped = ObservationStore.open(b, mode="a")
    frame = bumped.read_times(times[:1])[dims.RAIN_RATE]
    bumped.append(frame.copy(data=np.nextafter(frame.values, np.float32(np.inf))), overwrite=True, source="import:frame")
    assert data_fingerprint(sb) != data_fingerprint(sa) and source_fingerprint(sb) == fp
    # importing the same files again (frames already stored: skipped) leaves the record as it was
    assert main(["import", str(tmp_path / "arc"), "--store", a, "--no-progress"]) == 0
    assert source_fingerprint(ObservationStore.open(a)) == fp
    # other options or other files: another fingerprint
    c = str(tmp_path / "c.zarr")
    assert main(["import", str(tmp_path / "arc"), "--store", c, "--downsample", "2", "--no-progress"]) == 0
    assert source_fingerprint(ObservationStore.open(c)) not in (None, fp)
    (tmp_path / "arc" / f"frame_{times[0]:%Y%m%d%H%M}.nc").unlink()
    v = np.full(GRID.shape, 7.0, np.float32)
    dims.make_frames(v, [times[0]], GRID.x, GRID.y, GRID.crs_wkt).to_netcdf(tmp_path / "arc" / "other.nc")
    d = str(tmp_path / "d.zarr")
    assert main(["import", str(tmp_path / "arc"), "--store", d, "--no-progress"]) == 0
    assert source_fingerprint(ObservationStore.open(d)) not in (None, fp)
    # a frame from elsewhere (ingest, a test writer): no source fingerprint; `nowcast info` says so
    other = ObservationStore.open(a, mode="a")
    other.append(dims.make_frames(v, [times[-1] + pd.Timedelta("5min")], GRID.x, GRID.y, GRID.crs_wkt), source="ingest")
    assert source_fingerprint(ObservationStore.open(a)) is None
    capsys.readouterr()
    assert main(["info", a]) == 0
    assert "4 imported files (no source fingerprint" in capsys.readouterr().out
    assert main(["info", b]) == 0
    assert f"4 imported files, source fingerprint {fp}" in capsys.readouterr().out
