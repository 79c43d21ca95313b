"""Directory (drop folder) and replay sources, presets and the registry, on real radar files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from nowcast.registry import UnknownNameError
from nowcast.sources import SOURCES, Source, create_source
from nowcast.sources.base import slots_between, time_from_name
from nowcast.sources.directory import content_complete
from nowcast.sources.presets import PRESETS, get_preset

NOW = pd.Timestamp("2026-06-01 12:00")
SINCE = NOW - pd.Timedelta("3h")


@pytest.fixture
def knmi(shared_data: Path) -> list[Path]:
    d = shared_data / "radar" / "knmi" / "20100826"
    if not d.is_dir():
        pytest.skip(f"real data not available: {d} is absent")
    return sorted(d.glob("*.h5"))


def test_registry_lists_builtins_and_rejects_unknown_names() -> None:
    assert {"synthetic", "http", "directory", "replay"} <= set(SOURCES.names())
    with pytest.raises(UnknownNameError, match="valid: .*directory"):
        create_source("ftp")
    with pytest.raises(ValueError, match="unexpected keyword argument 'patern'"):
        create_source("directory", path="/tmp", patern="*")
    for name in ("synthetic", "http", "directory", "replay"):
        opts = {"synthetic": {}, "http": {"url": "http://x/%H.h5"}, "directory": {"path": "/tmp"}, "replay": {"path": "/tmp"}}[name]
        src = create_source(name, name=f"my-{name}", **opts)
        assert isinstance(src, Source) and src.name == f"my-{name}"
        src.close()


def test_presets_expand_to_templates() -> None:
    p = get_preset("dwd-hx").expand()
    assert p["url"].startswith("https://opendata.dwd.de/") and "%Y%m%d_%H%M" in p["url"]
    assert p["latest_url"].endswith("LATEST-hd5")
    with pytest.raises(ValueError, match="base_url"):
        get_preset("opera-nimbus").expand()
    o = get_preset("opera-nimbus").expand(base_url="https://bucket.example/opera")
    assert pd.Timestamp("2024-11-26 01:15").strftime(o["url"]) == "https://bucket.example/opera/2024/11/26/T_PAAH22_C_EUOC_20241126011500.hdf"
    src = create_source("http", name="mrms", preset="mrms-preciprate")
    assert src.cadence == pd.Timedelta("2min")
    assert src.url_for(pd.Timestamp("2019-06-10 00:02")).endswith("MRMS_PrecipRate_00.00_20190610-000200.grib2.gz")
    items = src.poll(pd.Timestamp("2019-06-10 00:10"), pd.Timestamp("2019-06-10 00:00"), {})
    assert [i.time for i in items if i.time is not None] == list(pd.date_range("2019-06-10 00:02", "2019-06-10 00:10", freq="2min"))
    assert items[-1].time is None  # the latest alias
    src.close()
    with pytest.raises(UnknownNameError, match="dwd-hx"):
        get_preset("nope")
    assert len(PRESETS) >= 6


def test_time_helpers() -> None:
    assert time_from_name("RAD_NL25_RAP_5min_201008260005.h5", "%Y%m%d%H%M") == pd.Timestamp("2010-08-26 00:05")
    assert time_from_name("raa01-rw_10000-1408102050-dwd---bin.gz", "%y%m%d%H%M") == pd.Timestamp("2014-08-10 20:50")
    assert time_from_name("nothing.h5", "%Y%m%d%H%M") is None
    s = slots_between(pd.Timestamp("2024-01-01 00:02"), pd.Timestamp("2024-01-01 00:15"), pd.Timedelta("5min"))
    assert list(s) == list(pd.date_range("2024-01-01 00:05", periods=3, freq="5min"))


def test_content_completeness_of_real_formats(shared_data: Path, tmp_path: Path) -> None:
    samples = [
        "radar/knmi/20100826/RAD_NL25_RAP_5min_201008260000.h5",
        "radar/mrms/20190610/PrecipRate_00.00_20190610-000000.grib2",
        "radar/radolan/20140810/raa01-rw_10000-1408102050-dwd---bin.gz",
        "radar/mch/20150515/AQC151351545F_00005.801.gif",
    ]
    for rel in samples:
        p = shared_data / rel
        if not p.exists():
            pytest.skip(f"real data not available: {p}")
        assert content_complete(p) is True, rel
        cut = tmp_path / p.name
        cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
        assert content_complete(cut) is False, rel
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert content_complete(text) is None


def test_directory_takes_files_only_when_complete(knmi: list[Path], tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    src = create_source("directory", name="drop", path=drop, pattern="*", stable_polls=2, give_up_seconds=0.0)
    state: dict = {}
    # a producer writing with the .part convention: invisible until renamed
    part = drop / (knmi[0].name + ".part")
    part.write_bytes(knmi[0].read_bytes())
    assert src.poll(NOW, SINCE, state) == []
    part.rename(drop / knmi[0].name)
    items = src.poll(NOW, SINCE, state)
    assert [i.key for i in items] == [knmi[0].name]  # HDF5 complete: taken at once
    # a half-written HDF5 file is not taken while it says it is incomplete
    growing = drop / knmi[1].name
    data = knmi[1].read_bytes()
    growing.write_bytes(data[: len(data) // 2])
    assert knmi[1].name not in [i.key for i in src.poll(NOW, SINCE, state)]
    with growing.open("ab") as fh:
        fh.write(data[len(data) // 2 :])
    assert knmi[1].name in [i.key for i in src.poll(NOW, SINCE, state)]
    # a file of unknown format is taken once its size is stable across two polls
    other = drop / "strokes.csv"
    other.write_text("time,lat,lon\n")
    assert "strokes.csv" not in [i.key for i in src.poll(NOW, SINCE, state)]
    assert "strokes.csv" in [i.key for i in src.poll(NOW, SINCE, state)]
    # hidden files and the pending entries of vanished files are dropped
    (drop / ".hidden.h5").write_bytes(data)
    other.unlink()
    src.poll(NOW, SINCE, state)
    assert "strokes.csv" not in state["pending"] and ".hidden.h5" not in state["pending"]


def test_directory_time_format_filters_the_backfill_window(knmi: list[Path], tmp_path: Path) -> None:
    for p in knmi[:3]:
        shutil.copy(p, tmp_path / p.name)
    src = create_source("directory", path=tmp_path, time_format="%Y%m%d%H%M", pattern="*.h5")
    items = src.poll(pd.Timestamp("2010-08-26 00:12"), pd.Timestamp("2010-08-26 00:02"), {})
    assert [i.time for i in items] == [pd.Timestamp("2010-08-26 00:05"), pd.Timestamp("2010-08-26 00:10")]


def test_replay_runs_a_simulated_clock_with_cyclic_shift(knmi: list[Path]) -> None:
    d = knmi[0].parent
    # 2 files 00:00 and 00:05 (times read from the files), 10x speed, from the first file
    src = create_source("replay", path=d, pattern="RAD_NL25_RAP_5min_20100826000*.h5", speed=10.0, loop=True)
    state: dict = {}
    items = src.poll(pd.Timestamp.now(), pd.Timestamp.now() - pd.Timedelta("1h"), state)  # learns the archive
    assert len(state["file_times"]) == 2  # 00:00 and 00:05 match the pattern
    wall0 = pd.Timestamp(src._wall_start, unit="s")
    sim = src.clock(wall0 + pd.Timedelta("60s"))
    assert sim == pd.Timestamp("2010-08-26 00:10")  # 60 s x 10 after 00:00
    items = src.poll(sim + pd.Timedelta("20min"), pd.Timestamp("2010-08-25 23:59"), state)
    times = [i.time for i in items]
    # period = 00:05 - 00:00 + 5 min = 10 min: cycles repeat at +10 min
    assert times == list(pd.date_range("2010-08-26 00:00", "2010-08-26 00:30", freq="5min"))
    assert items[2].key.endswith("@1") and items[2].key.startswith("RAD_NL25_RAP_5min_201008260000")
    fetched = src.fetch(items[2], state)
    assert fetched.time == pd.Timestamp("2010-08-26 00:10") and not fetched.temporary
    # origin far from the archive shifts it; until caps the clock
    src2 = create_source("replay", path=d, pattern="RAD_NL25_RAP_5min_20100826000*.h5", origin="2026-01-01", until="2026-01-01 00:20", speed=float("inf"))
    src2.poll(pd.Timestamp.now(), pd.Timestamp.now(), state)
    now2 = src2.clock(pd.Timestamp.now())
    assert now2 == pd.Timestamp("2026-01-01 00:20")
    items2 = src2.poll(now2, now2 - pd.Timedelta("1h"), state)
    assert [i.time for i in items2] == list(pd.date_range("2026-01-01 00:00", "2026-01-01 00:20", freq="5min"))
