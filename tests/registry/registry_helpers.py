"""Helpers of the registry/retrain tests: seeded synthetic frames and stores (48x48 cells of
8 km, 5-min cadence, 11 h), and a small retrain configuration for the ``test-shift`` model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nowcast import dims

START = pd.Timestamp("2026-06-01T00:00")
HOURS = 11.0
TIMES = pd.date_range(START, START + pd.Timedelta(hours=HOURS), freq="5min")


def make_synthetic_frames() -> dict[Any, Any]:
    """Seeded synthetic (rain, lightning) arrays for every 5-min slot of 11 h, and the grid."""
    from nowcast.sources.synthetic import SyntheticRadar

    radar = SyntheticRadar(SyntheticRadar.default_grid(nx=48, ny=48, resolution=8000.0), seed=7, wet_fraction=0.3)
    out: dict[Any, Any] = {"grid": radar.grid}
    for t in TIMES:
        ds = radar.frame(t)
        out[t] = (ds[dims.RAIN_RATE].values, ds[dims.LIGHTNING].values)
    return out


def build_store(
    url: str,
    frames: dict[Any, Any],
    keep: Callable[[pd.Timestamp], bool] = lambda t: True,
    scale: float = 1.0,
) -> str:
    """A store at ``url`` with the frames for which ``keep(t)``; rain multiplied by ``scale``."""
    from nowcast.store import ObservationStore

    grid = frames["grid"]
    store = ObservationStore.create(url, grid)
    coords = grid.coords()
    for t in TIMES:
        if not keep(t):
            continue
        rain, light = frames[t]
        da = dims.make_frames(rain * np.float32(scale), [t], coords[dims.X], coords[dims.Y], grid.crs_wkt)
        store.append(da, lightning=light)
    return url


def retrain_settings(store: str, registry: str, tmp: Path, **overrides: Any) -> dict[str, Any]:
    """A small, fast retrain configuration as a dict (nested tables)."""
    cfg: dict[str, Any] = {
        "store": store,
        "registry": registry,
        "create_registry": True,
        "nowcaster": "test-shift",
        "trainer": "registry_tiny:tiny_fit",
        "work_dir": str(tmp / "work"),
        "seed": 1,
        "device": "cpu",
        "window": {"train_hours": 4, "val_hours": 1, "eval_hours": 3, "min_wet_fraction": 0.001},
        "evaluation": {"stride_minutes": 10, "block_minutes": 30, "bootstrap": 500, "baseline": "persistence", "first_champion": "always"},
        "model": {"n_inputs": 1, "n_leads": 12},
        "train": {},
    }
    for k, v in overrides.items():
        if isinstance(v, dict):
            cfg[k] = {**cfg.get(k, {}), **v}
        else:
            cfg[k] = v
    return cfg
