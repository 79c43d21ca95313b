"""Observation store: idempotent append, explicit gaps, completeness marker, windows, state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

from nowcast import dims
from nowcast.grid import Grid
from nowcast.store import ObservationStore, StoreError

T0 = pd.Timestamp("2024-03-01 23:40")
STEP = pd.Timedelta("5min")


@pytest.fixture
def grid() -> Grid:
    return Grid.from_bounds("EPSG:3035", 4_000_000, 2_500_000, 4_064_000, 2_548_000, 1000)


def frame(grid: Grid, t: pd.Timestamp, value: float) -> xr.DataArray:  # noqa: F821
    v = np.full(grid.shape, value, np.float32)
    v[:3, :3] = np.nan  # outside coverage
    return dims.make_frames(v, t, grid.x, grid.y, grid.crs_wkt)


def test_create_open_and_reopen(tmp_path, grid):
    url = str(tmp_path / "obs.zarr")
    s = ObservationStore.create(url, grid)
    assert s.last_complete() is None and len(s.times()) == 0
    with pytest.raises(StoreError, match="already exists"):
        ObservationStore.create(url, grid)
    r = ObservationStore.open(url)
    assert r.grid == grid and r.cadence == STEP
    assert r.grid.crs.to_epsg() == 3035


def test_open_missing_and_foreign(tmp_path):
    with pytest.raises(StoreError, match="no observation store"):
        ObservationStore.open(str(tmp_path / "nope.zarr"))
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a nowcast observation store"):
        ObservationStore.open(str(tmp_path / "other.zarr"))


def test_idempotent_append_gaps_and_window_across_midnight(tmp_path, grid):
    s = ObservationStore.create(str(tmp_path / "obs.zarr"), grid)
    for i in range(6):
        if i == 3:
            continue  # the provider skipped this slot
        assert s.append(frame(grid, T0 + i * STEP, float(i)), lightning=np.full(grid.shape, i, np.float32))
    assert not s.append(frame(grid, T0 + STEP, 99.0)), "a frame written twice is stored once"
    assert len(s.times()) == 5
    assert s.last_complete() == T0 + 5 * STEP
    w = s.window(T0 + 5 * STEP, 6)
    assert w[dims.RAIN_RATE].dims == dims.FRAME_DIMS
    np.testing.assert_array_equal(w[dims.RAIN_RATE][:, 5, 5].values, [0, 1, 2, np.nan, 4, 5])
    np.testing.assert_array_equal(w["present"].values, [True, True, True, False, True, True])
    assert np.isnan(w[dims.RAIN_RATE][0, 0, 0]), "no coverage stays NaN"
    assert w[dims.LIGHTNING][4, 5, 5] == 4
    assert dims.crs_of(w).to_epsg() == 3035
    assert s.gaps() == [(T0 + 3 * STEP, T0 + 3 * STEP)]
    # the day boundary is crossed (23:40 .. 00:05)
    assert {t.day for t in s.times()} == {1, 2}


def test_overwrite_replaces(tmp_path, grid):
    s = ObservationStore.create(str(tmp_path / "obs.zarr"), grid)
    s.append(frame(grid, T0, 1.0))
    assert s.append(frame(grid, T0, 2.0), overwrite=True)
    assert s.window(T0, 1)[dims.RAIN_RATE][0, 5, 5] == 2.0


def test_half_written_frame_reads_as_missing(tmp_path, grid):
    """Data chunk written but the process died before the completeness marker."""
    s = ObservationStore.create(str(tmp_path / "obs.zarr"), grid)
    s.append(frame(grid, T0, 1.0))
    slot = s.slot_of(T0 + STEP)
    s._day_group(slot.day, create=True)[dims.RAIN_RATE][slot.index] = np.full(grid.shape, 7.0, np.float32)
    r = ObservationStore.open(s.url)
    w = r.window(T0 + STEP, 2)
    assert np.isnan(w[dims.RAIN_RATE][1]).all() and not w["present"][1]
    assert r.last_complete() == T0
    # the restarted writer stores the frame again (exactly once)
    assert s.append(frame(grid, T0 + STEP, 1.5))
    assert len(s.times()) == 2


def test_bad_frames_are_refused_and_store_unchanged(tmp_path, grid):
    s = ObservationStore.create(str(tmp_path / "obs.zarr"), grid)
    version = s.version
    with pytest.raises(StoreError, match="not on the store cadence"):
        s.append(frame(grid, T0 + pd.Timedelta("2min"), 1.0))
    other = Grid.from_bounds("EPSG:3035", 0, 0, 10_000, 10_000, 1000)
    with pytest.raises(StoreError, match="regrid"):
        s.append(frame(other, T0, 1.0))
    bad = frame(grid, T0, 1.0).copy()
    bad[0, 10, 10] = -3
    with pytest.raises(StoreError, match="negative"):
        s.append(bad)
    assert s.version == version and len(s.times()) == 0


def test_read_only_refuses_writes(tmp_path, grid):
    ObservationStore.create(str(tmp_path / "obs.zarr"), grid)
    r = ObservationStore.open(str(tmp_path / "obs.zarr"))
    with pytest.raises(StoreError, match="read-only"):
        r.append(frame(grid, T0, 1.0))


def test_version_changes_with_every_complete_frame(tmp_path, grid):
    s = ObservationStore.create(str(tmp_path / "obs.zarr"), grid)
    reader = ObservationStore.open(s.url)
    seen = {reader.version}
    s.append(frame(grid, T0, 1.0))
    seen.add(reader.version)
    s.append_lightning(T0 + STEP, np.ones(grid.shape, np.float32))
    seen.add(reader.version)
    s.append(frame(grid, T0 - STEP, 1.0))  # late (out-of-order) frame
    seen.add(reader.version)
    assert len(seen) == 4
    assert reader.last_complete() == T0, "a late frame does not move the marker back"


def test_sharded_large_frame_crop(tmp_path):
    g = Grid.from_bounds("EPSG:3035", 0, 0, 1100_000, 1000_000, 1000)  # 1000 x 1100 > threshold
    s = ObservationStore.create(str(tmp_path / "big.zarr"), g)
    v = np.arange(g.shape[0] * g.shape[1], dtype=np.float32).reshape(g.shape) % 50
    s.append(dims.make_frames(v, T0, g.x, g.y, g.crs_wkt))
    w = s.window(T0, 2, rows=slice(300, 812), cols=slice(500, 1012))
    assert w[dims.RAIN_RATE].shape == (2, 512, 512)
    np.testing.assert_array_equal(w[dims.RAIN_RATE][1].values, v[300:812, 500:1012])
    np.testing.assert_array_equal(w[dims.X].values, g.x[500:1012])
    arr = s._array(s.slot_of(T0).day, dims.RAIN_RATE)
    assert arr.shards is not None and arr.chunks == (1, 256, 256)


def test_source_state_and_info(tmp_path, grid):
    s = ObservationStore.create(str(tmp_path / "obs.zarr"), grid)
    assert s.get_state("radar") == {}
    s.set_state("radar", {"last": "2024-01-01T00:00:00", "etag": "abc"})
    assert ObservationStore.open(s.url).get_state("radar")["etag"] == "abc"
    s.append(frame(grid, T0, 1.0))
    s.append(frame(grid, T0 + 3 * STEP, 1.0))
    info = s.info()
    assert info["frames"] == 2 and info["gaps"][0][2] == 2
    assert info["grid"]["shape"] == [48, 64] and info["crs"] == "EPSG:3035"
    assert info["size_bytes"] > 0


def test_open_or_create_checks_grid(tmp_path, grid):
    url = str(tmp_path / "obs.zarr")
    ObservationStore.open_or_create(url, grid)
    assert ObservationStore.open_or_create(url, grid).grid == grid
    with pytest.raises(StoreError, match="differs"):
        ObservationStore.open_or_create(url, Grid.from_bounds("EPSG:3035", 0, 0, 5000, 5000, 1000))
