"""Seeded synthetic model inputs shared by the model tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims

T0 = pd.Timestamp("2024-06-01T12:00")


def make_history(
    rain: np.ndarray,
    lightning: np.ndarray | None = None,
    t0: pd.Timestamp = T0,
    cadence: str = "5min",
    resolution: float = 1000.0,
) -> xr.Dataset:
    """Dataset(time, y, x) with rain_rate (mm/h) and lightning from (time, y, x) arrays."""
    n, ny, nx = rain.shape
    times = pd.date_range(t0, periods=n, freq=cadence)
    x = 500000.0 + resolution * np.arange(nx)
    y = 6000000.0 - resolution * np.arange(ny)
    rr = dims.make_frames(rain, times, x, y, "EPSG:3035")
    light = np.zeros_like(rain) if lightning is None else lightning
    ds = xr.Dataset({dims.RAIN_RATE: rr, dims.LIGHTNING: (dims.FRAME_DIMS, light.astype(np.float32), {"units": dims.LIGHTNING_UNITS})})
    return dims.attach_crs(ds, "EPSG:3035")


def blob_frames(n: int, ny: int = 64, nx: int = 64, u: float = 1.5, v: float = 1.0, x0: float = 18.0, y0: float = 20.0, peak: float = 20.0) -> np.ndarray:
    """A rain blob (plus an embedded core) translating by (u, v) cells per frame; (n, ny, nx) mm/h."""
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    frames = []
    for k in range(n):
        cx, cy = x0 + u * k, y0 + v * k
        r = peak * np.exp(-(((xx - cx) / 7.0) ** 2 + ((yy - cy) / 5.0) ** 2))
        r += 0.5 * peak * np.exp(-(((xx - cx - 6) / 2.5) ** 2 + ((yy - cy + 3) / 2.5) ** 2))
        r[r < 0.1] = 0.0
        frames.append(r)
    return np.asarray(frames, dtype=np.float32)
