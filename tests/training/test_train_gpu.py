"""CUDA paths: bf16 autocast training and GPU inference (skipped without CUDA)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import TINY_OPTIONS

from nowcast import dims
from nowcast.models import create_nowcaster

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")]


def test_cuda_training_and_inference(tiny_store, splits, guide_cache: Path, tmp_path: Path) -> None:  # noqa: ANN001
    options = copy.deepcopy(TINY_OPTIONS)
    options["train"].update(cache_dir=str(guide_cache), epochs=2)
    from training.api import fit

    path = fit(options, tiny_store, splits[0], splits[1], seed=0, device="cuda", out_dir=tmp_path)
    ckpt = torch.load(path, weights_only=True)
    assert all(v.device.type == "cpu" for v in ckpt["state_dict"].values())  # portable checkpoint
    gpu = create_nowcaster("convlstm", checkpoint=path, device="cuda")
    cpu = create_nowcaster("convlstm", checkpoint=path, device="cpu")
    history = tiny_store.window(tiny_store.times()[36], gpu.n_inputs)
    leads = [np.timedelta64(5 * k, "m") for k in range(1, 5)]
    a = gpu.forecast(history, leads)[dims.RAIN_RATE].values
    b = cpu.forecast(history, leads)[dims.RAIN_RATE].values
    ok = np.isfinite(b)
    assert np.isfinite(a[ok]).all()
    np.testing.assert_allclose(a[ok], b[ok], rtol=0.1, atol=0.2)  # bf16 autocast on the GPU


def test_auto_device_picks_cuda() -> None:
    from nowcast.models.convlstm import resolve_device

    assert resolve_device("auto") == "cuda"
