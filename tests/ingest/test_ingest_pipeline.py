"""The ingest pipeline with the drop-folder, replay, synthetic and lightning sources, and the
ingest process (spawned child, SIGTERM) with its configuration files."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ingest_helpers import assert_store_consistent, knmi_file, slot

from ingest import IngestSettings, IngestStatus, SourceRunner, read_ingest_status
from nowcast import dims
from nowcast.grid import Grid
from nowcast.sources import create_source
from nowcast.store import ObservationStore

REPO = Path(__file__).resolve().parents[2]


def settings(tmp_path: Path, **kw) -> IngestSettings:
    return IngestSettings(quarantine_dir=tmp_path / "quarantine", missing_retry=pd.Timedelta(0), **kw)


def test_drop_folder_ingest_with_partial_and_bad_files(knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    url = str(tmp_path / "obs.zarr")
    store = ObservationStore.create(url, knmi_grid)
    src = create_source("directory", name="drop", path=drop, give_up_seconds=0.0)
    runner = SourceRunner(src, store, settings(tmp_path), IngestStatus(store))
    now = slot(10)
    for i in range(3):
        shutil.copy(knmi_file(knmi_dir, slot(i)), drop / knmi_file(knmi_dir, slot(i)).name)
    # a producer still writing: half of a file, and a .part file
    half = knmi_file(knmi_dir, slot(3)).read_bytes()
    (drop / knmi_file(knmi_dir, slot(3)).name).write_bytes(half[: len(half) // 2])
    (drop / (knmi_file(knmi_dir, slot(4)).name + ".part")).write_bytes(knmi_file(knmi_dir, slot(4)).read_bytes())
    (drop / "README.txt").write_text("not a radar file\n" * 10)
    rep = runner.run_once(now)
    assert rep.ingested == 3 and rep.quarantined == 0  # README waits for a second poll
    # the producer finishes; README has been stable for two polls now
    (drop / knmi_file(knmi_dir, slot(3)).name).write_bytes(half)
    (drop / (knmi_file(knmi_dir, slot(4)).name + ".part")).rename(drop / knmi_file(knmi_dir, slot(4)).name)
    rep = runner.run_once(now)
    assert rep.ingested == 2 and rep.quarantined == 1
    # restart: nothing is reprocessed, the bad file is not quarantined again
    store2 = ObservationStore.open(url, "a")
    rep = SourceRunner(create_source("directory", name="drop", path=drop), store2, settings(tmp_path)).run_once(now)
    assert rep.ingested == rep.duplicates == rep.quarantined == 0
    assert_store_consistent(url, {slot(i): knmi_file(knmi_dir, slot(i)) for i in range(5)})
    reasons = list((tmp_path / "quarantine" / "drop").glob("*.reason.txt"))
    assert len(reasons) == 1 and "README.txt" in reasons[0].read_text()
    assert (drop / "README.txt").exists()  # the producer's file is copied, not taken away


def test_drop_folder_regrids_onto_the_store_grid(knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    from nowcast.io import read_radar
    from nowcast.regrid import regrid

    coarse = Grid.regular(knmi_grid.crs, knmi_grid.x[0] + 1.5 * knmi_grid.dx, knmi_grid.y[0] + 1.5 * knmi_grid.dy, 4 * knmi_grid.dx, 4 * knmi_grid.dy, 150, 160)
    store = ObservationStore.create(str(tmp_path / "obs.zarr"), coarse)
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(knmi_file(knmi_dir, slot(0)), drop)
    rep = SourceRunner(create_source("directory", path=drop), store, settings(tmp_path, regrid_method="area_mean")).run_once(slot(1))
    assert rep.ingested == 1
    got = store.window(slot(0), 1)[dims.RAIN_RATE].isel(time=0).values
    want = regrid(read_radar(knmi_file(knmi_dir, slot(0))), coarse, method="area_mean").isel(time=0).values
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).any() and np.nanmax(got) > 0  # coverage edge kept as NaN, rain present


def test_replay_backfills_shifted_archive(knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    url = str(tmp_path / "obs.zarr")
    store = ObservationStore.create(url, knmi_grid)
    src = create_source(
        "replay", name="replay", path=knmi_dir, pattern="RAD_NL25_RAP_5min_20100826000*.h5",
        origin="2026-03-01", until="2026-03-01 00:35", speed=float("inf"),
    )
    rep = SourceRunner(src, store, settings(tmp_path, backfill=pd.Timedelta("1D"))).run_once()
    assert rep.ingested == 8  # two files, cycled: 00:00 .. 00:35
    times = store.times()
    assert list(times) == list(pd.date_range("2026-03-01 00:00", "2026-03-01 00:35", freq="5min"))
    ds = store.read_times(times)
    from nowcast.io import read_radar

    for i, t in enumerate(times):
        original = knmi_file(knmi_dir, slot(((t - times[0]) // pd.Timedelta("5min")) % 2))
        np.testing.assert_array_equal(ds[dims.RAIN_RATE].isel(time=i).values, read_radar(original).isel(time=0).values)


def test_synthetic_ingest_writes_rain_and_lightning(tmp_path: Path) -> None:
    src = create_source("synthetic", name="syn", seed=4, grid=Grid.regular("EPSG:3035", 4_200_000, 2_600_000, 2000, -2000, 64, 48))
    store = ObservationStore.create(str(tmp_path / "obs.zarr"), src.radar.grid)
    seen: list[pd.Timestamp] = []
    rep = SourceRunner(src, store, settings(tmp_path, backfill=pd.Timedelta("30min"), on_frame=lambda t, name: seen.append(t))).run_once(pd.Timestamp("2026-06-01 12:01"))
    assert rep.ingested == 6 and sorted(seen) == list(store.times())
    assert list(store.times(dims.LIGHTNING)) == list(store.times())
    latest = store.latest(1)
    expected = src.radar.frame(pd.Timestamp("2026-06-01 12:00"))
    np.testing.assert_array_equal(latest[dims.RAIN_RATE].isel(time=0).values, expected[dims.RAIN_RATE].values)
    np.testing.assert_array_equal(latest[dims.LIGHTNING].isel(time=0).values, expected[dims.LIGHTNING].values)


def test_lightning_directory_is_gridded_per_slot_exactly(shared_data: Path, tmp_path: Path) -> None:
    from nowcast.lightning import Flashes, grid_counts, read_lightning

    glm = sorted((shared_data / "lightning" / "glm" / "20180702").glob("OR_GLM-L2-LCFA_*.nc"))
    if len(glm) < 3:
        pytest.skip("real data not available: GLM LCFA files")
    grid = Grid.from_bounds("EPSG:4326", -120.0, -37.0, -47.0, 53.0, 0.5)
    store = ObservationStore.create(str(tmp_path / "obs.zarr"), grid)
    drop = tmp_path / "glm"
    drop.mkdir()
    for f in glm[:2]:
        shutil.copy(f, drop)
    src = create_source("directory", name="glm", kind="lightning", path=drop, pattern="*.nc")
    runner = SourceRunner(src, store, settings(tmp_path, lightning_settle=pd.Timedelta("30s")), IngestStatus(store))
    slot_t = pd.Timestamp("2018-07-02 04:35")
    # the 04:35 slot is still open 10 s after its end: nothing written yet
    rep = runner.run_once(slot_t + pd.Timedelta("10s"))
    assert rep.lightning_slots == 0 and not store.has(slot_t, dims.LIGHTNING)
    rep = runner.run_once(slot_t + pd.Timedelta("1min"))
    assert rep.lightning_slots == 1

    def stored() -> np.ndarray:
        return store.read_times([slot_t])[dims.LIGHTNING].isel(time=0).values

    def direct(files: list[Path]) -> np.ndarray:
        return grid_counts(Flashes.concat([read_lightning(f) for f in files]), grid, times=[slot_t]).isel(time=0).values

    np.testing.assert_array_equal(stored(), direct(glm[:2]))
    # a late file: the slot is recomputed from all its files, counts stay exact
    shutil.copy(glm[2], drop)
    rep = runner.run_once(slot_t + pd.Timedelta("2min"))
    assert rep.lightning_slots == 1
    np.testing.assert_array_equal(stored(), direct(glm))
    assert stored().sum() > 800
    # idempotent: a rerun changes nothing
    assert runner.run_once(slot_t + pd.Timedelta("3min")).lightning_slots == 0
    assert read_ingest_status(store)["sources"]["glm"]["lightning_slots"] == 2


def test_ingest_process_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    from ingest.config import coerce_config
    from ingest.process import run_ingest_process, stop_ingest_process

    url = str(tmp_path / "obs.zarr")
    cfg = coerce_config(
        {
            "source": "synthetic",
            "source_options": {"interval": 1, "jitter": 0, "backfill": "20min", "seed": 2},
            "store": {"grid": {"synthetic": True, "nx": 48, "ny": 40}},
            "quarantine_dir": str(tmp_path / "q"),
        },
        store=url,
    )
    proc = run_ingest_process(cfg)
    try:
        deadline = time.monotonic() + 60
        status: dict = {}
        while time.monotonic() < deadline:
            try:
                store = ObservationStore.open(url)
                status = read_ingest_status(store)
                if status.get("sources", {}).get("synthetic", {}).get("polls", 0) >= 2:
                    break
            except Exception:
                pass
            time.sleep(0.2)
        assert status["sources"]["synthetic"]["frames_ingested"] >= 4
        assert Path(url + ".ingest.lock").exists()
    finally:
        code = stop_ingest_process(proc, timeout=30)
    assert code == 0
    assert not Path(url + ".ingest.lock").exists()
    assert len(ObservationStore.open(url).times()) >= 4


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("ingest-*.*")), ids=lambda p: p.name)
def test_example_configurations_validate(path: Path) -> None:
    from ingest.config import load_ingest_config
    from nowcast.sources import create_source

    cfg = load_ingest_config(path)
    assert cfg.sources
    for s in cfg.sources:  # every source builds from its options (nothing is fetched)
        create_source(s.type, name=s.name, kind=s.kind, **s.options()).close()


def test_invalid_configuration_is_rejected_before_start(tmp_path: Path) -> None:
    from ingest.config import load_ingest_config
    from nowcast.config import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - {name: a, type: http, backfill: soon}\n  - {name: a, type: synthetic}\n")
    with pytest.raises(ConfigError, match="backfill"):
        load_ingest_config(bad)
    bad.write_text("sources:\n  - {name: a, type: synthetic}\n  - {name: a, type: synthetic}\n")
    with pytest.raises(ConfigError, match="unique"):
        load_ingest_config(bad)


def test_cli_once_check_and_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import logging

    from cli import CommandError
    from cli.commands import ingest as command

    def run(*argv: str) -> int:
        p = argparse.ArgumentParser()
        command.add_arguments(p)
        args = p.parse_args(argv)
        args.verbose = 0
        return command.run(args)

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        url = str(tmp_path / "obs.zarr")
        base = ["--set", f"store.url={url}", "--set", f"quarantine_dir={tmp_path / 'q'}", "--set", "store.grid.nx=32", "--set", "store.grid.ny=24"]
        assert run(*base, "--set", "sources.0.backfill=15min", "--once") == 0
        assert capsys.readouterr().out.startswith("synthetic: 3 ingested")
        assert ObservationStore.open(url).grid.shape == (24, 32)
        assert run(*base, "--check") == 0 and '"backfill": "1h"' in capsys.readouterr().out
        with pytest.raises(CommandError, match="unknown source type 'nope'"):
            run(*base, "--set", "sources.0.type=nope", "--check")
        with pytest.raises(CommandError, match="unexpected keyword argument 'seeed'"):
            run(*base, "--set", "sources.0.seeed=1", "--once")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_short_form_configuration_and_json_logs() -> None:
    import json
    import logging

    from ingest.config import coerce_config
    from ingest.process import JsonFormatter

    cfg = coerce_config({"source": "dwd-hx", "source_options": {"interval": 120}}, store="x.zarr")
    assert cfg.store.url == "x.zarr"
    (src,) = cfg.sources
    assert (src.name, src.type, src.options(), src.interval) == ("dwd-hx", "http", {"preset": "dwd-hx"}, 120)
    assert coerce_config({"source": "synthetic"}).sources[0].type == "synthetic"
    rec = logging.LogRecord("nowcast.ingest", logging.WARNING, __file__, 1, "quarantined %s", ("x.h5",), None)
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["level"] == "WARNING" and doc["message"] == "quarantined x.h5" and doc["logger"] == "nowcast.ingest"
