"""Fixtures of the model tests: seeded synthetic histories and a small untrained ConvLSTM checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
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


@pytest.fixture
def history_factory() -> Callable[..., xr.Dataset]:
    return make_history


@pytest.fixture
def blob_history() -> xr.Dataset:
    """6 frames of a translating blob on 64x64 1-km cells, a NaN (no coverage) corner, and
    lightning in the core of the last frames."""
    rain = blob_frames(6)
    rain[:, :10, :12] = np.nan
    light = np.zeros_like(rain)
    light[-2:, 22:25, 25:28] = 2.0
    return make_history(rain, light)


@pytest.fixture(scope="session")
def convlstm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained (seeded) residual ConvLSTM checkpoint with 15 leads, in the real format."""
    import torch

    from nowcast.models.network import EncoderForecaster, ModelConfig
    from training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(n_inputs=3, n_leads=15, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4, advection="residual")
    net = EncoderForecaster(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "untrained.pt"
    save_checkpoint(path, {"model_config": cfg.model_dump(), "state_dict": net.state_dict(), "train_config": {}, "metrics": {}})
    return path
