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


#: seeds of the held-out synthetic evaluation (the shipped synthetic weights train on seed 7)
HELD_OUT_SEEDS: tuple[int, ...] = (101, 102, 103, 104, 105, 106)


def build_held_out_store(
    path: str | Path,
    seeds: Sequence[int] = HELD_OUT_SEEDS,
    *,
    size: int = 128,
    hours: float = 4.0,
    first_day: str = "2024-07-01T12:00",
) -> Path:
    """A store of one ``hours``-long event per seed of the live synthetic source (default
    :class:`SyntheticRadar` parameters, as ``nowcast serve`` runs it) on a ``size x size`` grid
    of 2 km cells; seed ``i`` fills day ``i`` from ``first_day``, so the events are separate
    blocks (block = "gap"). Seeds must differ from the training seed. Fails if ``path`` exists.
    """
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore

    grid = SyntheticRadar.default_grid(nx=size, ny=size)
    store = ObservationStore.create(str(path), grid, cadence=pd.Timedelta("5min"))
    n_frames = int(round(hours * 12))
    for day, seed in enumerate(seeds):
        radar = SyntheticRadar(grid, seed=seed)
        start = pd.Timestamp(first_day) + pd.Timedelta(days=day)
        for t in pd.date_range(start, periods=n_frames, freq="5min"):
            ds = radar.frame(t)
            store.append(ds["rain_rate"].expand_dims(time=[np.datetime64(t, "ns")]), lightning=ds["lightning"].values)
    log.info("held-out synthetic store %s: seeds %s, %d frames each", path, list(seeds), n_frames)
    return Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.dap.synthetic held-out PATH``: build the held-out evaluation store."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m training.dap.synthetic", description=__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    h = sub.add_parser("held-out", help="one event per held-out seed of the live synthetic source")
    h.add_argument("path", type=Path)
    h.add_argument("--seeds", type=int, nargs="+", default=list(HELD_OUT_SEEDS))
    h.add_argument("--size", type=int, default=128)
    h.add_argument("--hours", type=float, default=4.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    build_held_out_store(args.path, args.seeds, size=args.size, hours=args.hours)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
