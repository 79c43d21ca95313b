"""Fixtures of the ingest tests: real KNMI files, their grid, a fault-injecting HTTP server."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import KNMI_DAY, T0, FaultServer, knmi_file

from nowcast.grid import Grid


@pytest.fixture
def knmi_dir(shared_data: Path) -> Path:
    d = shared_data / "radar" / "knmi" / KNMI_DAY
    if not d.is_dir():
        pytest.skip(f"real data not available: {d} is absent (see ../shared/data/DATA.md)")
    return d


@functools.lru_cache(maxsize=2)
def _grid_of(path: Path) -> Grid:
    from nowcast.io import read_radar

    return Grid.of(read_radar(path))


@pytest.fixture
def knmi_grid(knmi_dir: Path) -> Grid:
    return _grid_of(knmi_file(knmi_dir, T0))


@pytest.fixture
def server() -> Iterator[FaultServer]:
    s = FaultServer(slow_seconds=1.2).start()
    yield s
    s.stop()
