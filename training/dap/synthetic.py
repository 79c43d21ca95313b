"""A seeded synthetic observation store of separate rain events, for demos, tests and benchmarks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: three 100-minute events separated by one-hour gaps (three blocks for block = "gap")
DEFAULT_EVENTS: tuple[tuple[str, int], ...] = (
    ("2024-06-01T10:00", 20),
    ("2024-06-01T12:40", 20),
    ("2024-06-01T15:20", 20),
)


def build_synthetic_store(
    path: str | Path,
    events: Sequence[tuple[str, int]] = DEFAULT_EVENTS,
    *,
    size: int = 64,
    resolution: float = 2000.0,
    seed: int = 3,
    holes: Sequence[str] = (),
    no_coverage_rows: int = 0,
) -> Path:
    """Create a store at ``path`` with the frames of ``events`` ((start, n_frames) at 5 min).

    The grid is ``size x size`` cells of ``resolution`` m (:class:`SyntheticRadar` default
    grid); rain is convective enough to produce lightning. ``holes``: frame times left out;
    ``no_coverage_rows``: top rows set to NaN (no radar coverage). Fails if ``path`` exists.
    """
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore

    grid = SyntheticRadar.default_grid(nx=size, ny=size, resolution=resolution)
    radar = SyntheticRadar(
        grid, seed=seed, wet_fraction=0.3, cell_rate=20.0, lightning_threshold=5.0
    )
    store = ObservationStore.create(str(path), grid, cadence=pd.Timedelta("5min"))
    skip = {pd.Timestamp(h) for h in holes}
    n = 0
    for start, count in events:
        for t in pd.date_range(start, periods=count, freq="5min"):
            if t in skip:
                continue
            ds = radar.frame(t)
            frame = ds["rain_rate"].expand_dims(time=[np.datetime64(t, "ns")])
            light = ds["lightning"].values.copy()
            if no_coverage_rows:
                frame = frame.copy()
                frame.values[:, :no_coverage_rows] = np.nan
                light[:no_coverage_rows] = np.nan
            store.append(frame, lightning=light)
            n += 1
    log.info("synthetic store %s: %d frames on a %dx%d grid", path, n, size, size)
    return Path(path)
