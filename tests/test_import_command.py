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
