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


def test_open_for_writing_repairs_the_root_marker(tmp_path, grid):
    """A crash after the slot was marked complete but before the root marker moved (issue 13,
    item 2): opening for writing brings last_complete, the counters and the version up to date."""
    url = str(tmp_path / "obs.zarr")
    s = ObservationStore.create(url, grid)
    s.append(frame(grid, T0, 1.0), source="radar")
    s.append(frame(grid, T0 + STEP, 2.0), source="radar")
    # the root marker as the killed writer left it: one frame behind
    zarr.open_group(url, mode="r+").attrs.update({"last_complete": T0.isoformat(), "frames_written": 1, "frames_by_source": {"radar": 1}})
    stale = ObservationStore.open(url)
    assert stale.last_complete() == T0, "a reader does not repair"
    stale_version = stale.version
    w = ObservationStore.open(url, "a")
    assert w.last_complete() == T0 + STEP
    assert w._root_attrs()["frames_written"] == 2
    assert w.frames_by_source() == {"radar": 2}
    assert stale.version != stale_version, "caches keyed on the version see the repair"
    assert ObservationStore.open(url, "a").repair() == {}, "a consistent store is left alone"


def test_markers_are_written_by_the_project_writer_not_by_zarr(tmp_path, grid, monkeypatch):
    """Item 8: once a store exists, zarr writes only chunks and array metadata; every group
    document (root, days, state) goes through nowcast.durability.write_atomic."""
    from zarr.storage import LocalStore

    from nowcast import durability

    s = ObservationStore.create(str(tmp_path / "obs.zarr"), grid)
    by_zarr: list[str] = []
    by_us: list[str] = []
    real_set, real_write = LocalStore.set, durability.write_atomic

    async def spy_set(self, key, value):  # noqa: ANN001, ANN202
        by_zarr.append(key)
        return await real_set(self, key, value)

    def spy_write(path, data, fs=None):  # noqa: ANN001, ANN202
        by_us.append(str(path)[len(s.url) + 1 :])
        return real_write(path, data, fs)

    monkeypatch.setattr(LocalStore, "set", spy_set)
    monkeypatch.setattr(durability, "write_atomic", spy_write)
    s.append(frame(grid, T0, 1.0), lightning=np.ones(grid.shape, np.float32), source="radar")
    s.append(frame(grid, T0 + 5 * STEP, 1.0), source="radar")  # the next day: a new day group
    s.set_state("radar", {"etag": "x"})
    group_docs = {"zarr.json", "days/zarr.json"} | {f"days/{d}/zarr.json" for d in ("20240301", "20240302")} | {"state/zarr.json", "state/radar/zarr.json"}
    assert not group_docs & set(by_zarr), sorted(set(by_zarr))
    assert all(k.endswith("/zarr.json") and k.count("/") == 3 or "/c/" in k for k in by_zarr), by_zarr
    assert {"zarr.json", "days/20240301/zarr.json", "days/20240302/zarr.json", "state/radar/zarr.json"} <= set(by_us)


def test_leftover_temporary_files_are_removed_by_the_next_writer(tmp_path, grid):
    from nowcast.durability import TMP_INFIX

    url = str(tmp_path / "obs.zarr")
    s = ObservationStore.create(url, grid)
    s.append(frame(grid, T0, 1.0))
    leftover = tmp_path / "obs.zarr" / "days" / "20240301" / f"zarr.json{TMP_INFIX}dead"
    leftover.write_text("{")  # a writer killed between its temp write and the rename
    assert ObservationStore.open(url).times().size == 1
    ObservationStore.open(url, "a")
    assert not leftover.exists()


def test_interrupted_creation_is_finished_by_the_next_create(tmp_path, grid):
    """Item 1: a creation killed after its first write leaves a recognisable folder; `info`
    names it, the next create (ingest, import) finishes it instead of refusing."""
    import os
    import subprocess
    import sys

    url = str(tmp_path / "obs.zarr")
    code = (
        "from nowcast.grid import Grid; from nowcast.store import ObservationStore; "
        f"ObservationStore.create({url!r}, Grid.from_bounds('EPSG:3035', 4_000_000, 2_500_000, 4_064_000, 2_548_000, 1000))"
    )
    for point in ("store.create.begun", "store.create.coords"):
        proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NOWCAST_CRASH_AT": point}, capture_output=True, timeout=120)
        assert proc.returncode == -9, proc.stderr.decode()[-2000:]
        with pytest.raises(StoreError, match="no observation store found: its creation .* was interrupted"):
            ObservationStore.open(url)
    s = ObservationStore.open_or_create(url, grid)
    assert s.grid == grid and s.last_complete() is None
    s.append(frame(grid, T0, 1.0))
    assert ObservationStore.open(url).times().tolist() == [T0]
    with pytest.raises(StoreError, match="already exists"):
        ObservationStore.create(url, grid)


def test_interrupted_day_creation_is_redone(tmp_path, grid):
    import os
    import subprocess
    import sys

    url = str(tmp_path / "obs.zarr")
    ObservationStore.create(url, grid)
    code = (
        "import numpy as np, pandas as pd; from nowcast import dims; from nowcast.store import ObservationStore; "
        f"s = ObservationStore.open({url!r}, 'a'); g = s.grid; "
        "s.append(dims.make_frames(np.ones(g.shape, np.float32), pd.Timestamp('2024-03-01 23:40'), g.x, g.y, g.crs_wkt))"
    )
    for point in ("store.day.begun", "store.day.arrays", "store.append.data"):
        proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NOWCAST_CRASH_AT": point}, capture_output=True, timeout=120)
        assert proc.returncode == -9, proc.stderr.decode()[-2000:]
        r = ObservationStore.open(url)
        assert len(r.times()) == 0 and r.last_complete() is None
        assert not r.window(T0, 1)["present"].any()
    s = ObservationStore.open(url, "a")
    assert s.append(frame(grid, T0, 3.0))
    assert ObservationStore.open(url).window(T0, 1)[dims.RAIN_RATE][0, 5, 5] == 3.0
