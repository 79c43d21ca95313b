"""Fixtures of the model tests: seeded synthetic histories and a small untrained ConvLSTM checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from model_data import blob_frames, make_history


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny tensors: one intra-op thread is faster than several on a shared CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
