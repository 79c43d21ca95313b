"""A tiny learnable nowcaster and its trainer, for fast retrain tests (importable by name:
the retrain config's ``trainer = "registry_tiny:tiny_fit"``).

``test-shift`` forecasts the last frame moved by one integer shift per lead; ``tiny_fit``
finds the shifts by cross-correlating (last input, target) pairs of the training windows in
well under a second. ``shuffled_fit`` pairs random frames instead: its shifts are noise and
the model is clearly worse (the "bad challenger").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.models.base import MODELS, forecast_dataset


def register() -> None:
    MODELS.register("test-shift", ShiftPersistence, replace=True)


class ShiftPersistence:
    """``test-shift``: the last frame moved by a learned integer shift per lead (JSON checkpoint)."""

    name = "test-shift"
    n_inputs = 1

    def __init__(self, checkpoint: str | Path, **_: Any) -> None:
        data = json.loads(Path(checkpoint).read_text())
        self.shifts = [tuple(s) for s in data["shifts"]]
        self.cadence = pd.Timedelta(minutes=int(data["cadence_minutes"]))
        self._version = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:12]

    @property
    def version(self) -> str:
        return self._version

    def forecast(self, history: xr.Dataset, leads: Sequence[pd.Timedelta] = dims.DEFAULT_LEADS) -> xr.Dataset:
        last = np.nan_to_num(np.asarray(history[dims.RAIN_RATE].values[-1], dtype=np.float32))
        steps = [int(round(pd.Timedelta(lead) / self.cadence)) for lead in leads]
        rain = np.stack([shift(last, self.shifts[min(s, len(self.shifts)) - 1]) for s in steps])
        return forecast_dataset(rain, np.zeros_like(rain), history, leads, self.name, self.version)


def shift(a: np.ndarray, s: tuple[int, int]) -> np.ndarray:
    """``a`` moved by (rows, cols), zero fill."""
    out = np.zeros_like(a)
    dy, dx = s
    ny, nx = a.shape
    out[max(dy, 0) : ny + min(dy, 0), max(dx, 0) : nx + min(dx, 0)] = a[max(-dy, 0) : ny - max(dy, 0), max(-dx, 0) : nx - max(dx, 0)]
    return out


def best_shift(x: np.ndarray, y: np.ndarray, radius: int = 20) -> tuple[int, int]:
    """Integer shift s maximising sum over pairs of x(p) * y(p + s); x, y (n, ny, nx)."""
    n, ny, nx = x.shape
    shape = (2 * ny, 2 * nx)
    cc = np.fft.irfft2(np.conj(np.fft.rfft2(x, shape)) * np.fft.rfft2(y, shape), shape).sum(0)
    best, arg = -np.inf, (0, 0)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            v = cc[dy % shape[0], dx % shape[1]]
            if v > best:
                best, arg = v, (dy, dx)
    return arg


def tiny_fit(
    options: dict[str, Any],
    store: Any,
    train_times: pd.DatetimeIndex,
    val_times: pd.DatetimeIndex,
    *,
    seed: int,
    device: str = "cpu",
    out_dir: Path,
    shuffle: bool = False,
) -> Path:
    """Shift per lead from (last input, target) pairs; ``shuffle`` pairs random frames instead."""
    n_leads = int(options["model"].get("n_leads", 12))
    cad = store.cadence
    rng = np.random.default_rng(seed)
    ts = train_times[:: max(1, len(train_times) // 24)]
    x = np.nan_to_num(np.asarray(store.read_times(ts)[dims.RAIN_RATE].values, dtype=np.float64))
    pool = np.nan_to_num(np.asarray(store.read_times(train_times)[dims.RAIN_RATE].values, dtype=np.float64)) if shuffle else None
    shifts = []
    for k in range(1, n_leads + 1):
        if pool is not None:
            y = pool[rng.integers(0, len(pool), size=len(ts))]
        else:
            y = np.nan_to_num(np.asarray(store.read_times(ts + k * cad)[dims.RAIN_RATE].values, dtype=np.float64))
        shifts.append(best_shift(np.log1p(x), np.log1p(y)))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "shift.json"
    path.write_text(json.dumps({"shifts": shifts, "cadence_minutes": int(cad.total_seconds() // 60), "shuffled": shuffle}))
    (out_dir / "metrics.json").write_text(json.dumps({"n_windows": len(ts), "shuffled": shuffle}))
    return path


def shuffled_fit(*args: Any, **kwargs: Any) -> Path:
    return tiny_fit(*args, **kwargs, shuffle=True)
