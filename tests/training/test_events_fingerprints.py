"""`python -m training.events fingerprints`: content and source fingerprints of event stores,
and the comparison with another machine's file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nowcast import dims
from nowcast.grid import Grid
from nowcast.store import ObservationStore
from training.events import main

GRID = Grid.from_bounds("EPSG:3035", 4_000_000, 2_500_000, 4_032_000, 2_524_000, 1000)


def _archive(folder: Path, day: str, value: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(pd.date_range(f"{day} 12:00", periods=4, freq="5min")):
        v = np.full(GRID.shape, value + i, np.float32)
        dims.make_frames(v, [t], GRID.x, GRID.y, GRID.crs_wkt).to_netcdf(folder / f"f_{t:%Y%m%d%H%M}.nc")


def test_fingerprints_tell_other_bits_from_other_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _archive(tmp_path / "data" / "a", "2024-06-01", 1.0)
    _archive(tmp_path / "data" / "b", "2024-06-02", 2.0)
    cat = tmp_path / "catalogue.toml"
    events = "".join(f'[[event]]\nname = "{n}"\nclass = "2km"\npaths = ["{n}"]\n' for n in ("a", "b"))
    cat.write_text(f'data_root = "{tmp_path / "data"}"\nstore_root = "{tmp_path / "stores"}"\n{events}')
    assert main(["build", "--catalogue", str(cat), "--no-progress"]) == 0
    here = tmp_path / "here.json"
    assert main(["fingerprints", "--catalogue", str(cat), "--out", str(here)]) == 0
    mine = json.loads(here.read_text())
    assert mine["machine"]["cpu"] and mine["machine"]["numpy"] == np.__version__
    assert {e["imported_files"] for e in mine["events"].values()} == {4}
    assert all(e["source_fingerprint"] for e in mine["events"].values())
    # "another machine": event a's stored values differ in the last bit, event b came from other files
    store = ObservationStore.open(str(tmp_path / "stores" / "2km" / "a.zarr"), mode="a")
    t = store.times()[0]
    frame = store.read_times([t])[dims.RAIN_RATE]
    store.append(frame.copy(data=np.nextafter(frame.values, np.float32(np.inf))), overwrite=True, source="import:f")
    other = json.loads(here.read_text())
    other["events"]["a"]["fingerprint"] = "0" * 16
    other["events"]["b"].update(fingerprint="1" * 16, source_fingerprint="2" * 16)
    theirs = tmp_path / "theirs.json"
    theirs.write_text(json.dumps(other))
    capsys.readouterr()
    assert main(["fingerprints", "--catalogue", str(cat), "--compare", str(theirs)]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert lines["a"].endswith("same sources, other stored values") and lines["b"].endswith("other sources")
    assert main(["fingerprints", "--catalogue", str(cat), "--compare", str(here)]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert lines["a"].endswith("same sources, other stored values") and lines["b"].endswith("identical")
    # a scratch rebuild from the same files (--store-root): the same sources, recorded in --out
    assert main(["build", "--catalogue", str(cat), "--store-root", str(tmp_path / "scratch"), "--no-progress"]) == 0
    out = tmp_path / "scratch.json"
    assert main(["fingerprints", "--catalogue", str(cat), "--store-root", str(tmp_path / "scratch"), "--compare", str(here), "--out", str(out)]) == 0
    rebuilt = json.loads(out.read_text())
    assert rebuilt["events"]["b"]["store"].startswith(str(tmp_path / "scratch"))
    assert rebuilt["comparison"] == {"with": str(here), "verdicts": {"a": "identical", "b": "identical"}}
