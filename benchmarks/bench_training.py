"""Training throughput of the ConvLSTM (default ``ModelConfig``), samples per second.

1. ``step``: optimisation steps (forward, loss, backward, AdamW step) on batches built from real
   model inputs (``input_features`` / ``guide_features`` of a seeded synthetic history, 128x128
   crops as in training), so the data pipeline is excluded: the network's ceiling. On CUDA
   also with bf16 autocast.
2. ``fit`` (full mode only): ``training.api.fit`` for one epoch on a seeded synthetic store,
   end to end (window selection, guide computation, data loading, validation, checkpoint).

Runnable alone: ``python benchmarks/bench_training.py [--quick] [--device cuda]``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from common import main, median, result, timed  # type: ignore[import-not-found]

NAME = "training"


def _batch(cfg: Any, batch: int, crop: int, device: str):
    import numpy as np
    import pandas as pd
    import torch

    from nowcast import dims
    from nowcast.models.convlstm import guide_features, input_features
    from nowcast.sources.synthetic import SyntheticRadar

    radar = SyntheticRadar(SyntheticRadar.default_grid(nx=crop, ny=crop, resolution=2000.0), seed=5, wet_fraction=0.3, cell_rate=5.0)
    hist = radar.frames(pd.date_range("2024-06-01T12:00", periods=cfg.n_inputs, freq="5min"))
    rain = np.asarray(hist[dims.RAIN_RATE].values, np.float32)
    light = np.asarray(hist[dims.LIGHTNING].values, np.float32)
    x = torch.from_numpy(input_features(rain, light, cfg))[None].repeat(batch, 1, 1, 1, 1).to(device)
    g = guide_features(rain, light, cfg)
    gt = None if g is None else torch.from_numpy(g)[None].repeat(batch, 1, 1, 1, 1).to(device)
    return x, gt


def _step_rows(device: str, quick: bool) -> list[dict[str, Any]]:
    import torch

    from nowcast.models.network import EncoderForecaster, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig()
    batch, crop = (4, 64) if quick else (8, 128)
    steps = 2 if quick else 10
    net = EncoderForecaster(cfg).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x, g = _batch(cfg, batch, crop, device)
    with torch.no_grad():
        target_rain, target_light = (t.detach().clone() for t in net(x, g))
    precisions = [("fp32", False)] + ([("bf16", True)] if device == "cuda" else [])
    rows = []
    for precision, bf16 in precisions:

        def step(b: bool = bf16) -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=b):
                rain, light = net(x, g)
                loss = torch.nn.functional.mse_loss(rain.float(), target_rain.float() + 0.1) + torch.nn.functional.binary_cross_entropy_with_logits(light.float(), (target_light > 0).float())
            loss.backward()
            opt.step()
            if device == "cuda":
                torch.cuda.synchronize()

        step()  # warm-up
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        with timed() as t:
            for _ in range(steps):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
        rows.append(
            {
                "what": f"step ({precision})",
                "device": device,
                "batch": batch,
                "crop": crop,
                "samples_per_s": batch / median(times),
                "step_s": median(times),
                "peak_py_mb": t.peak_py_mb,
                "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
            }
        )
    return rows


def _fit_row(device: str) -> dict[str, Any]:
    import pandas as pd

    from nowcast import dims
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore
    from training.api import fit

    samples = 64
    with tempfile.TemporaryDirectory(prefix="nowcast-bench-training-") as tmp:
        grid = SyntheticRadar.default_grid(nx=160, ny=160, resolution=2000.0)
        radar = SyntheticRadar(grid, seed=3, wet_fraction=0.3, cell_rate=5.0)
        store = ObservationStore.create(str(Path(tmp) / "obs.zarr"), grid)
        times = pd.date_range("2024-06-01T10:00", periods=72, freq="5min")
        for t in times:
            ds = radar.frame(t)
            store.append(ds[dims.RAIN_RATE].expand_dims({dims.TIME: [ds[dims.TIME].values]}), lightning=ds[dims.LIGHTNING])
        options = {"model": {}, "train": {"epochs": 1, "batch_size": 8, "crop_size": 128, "samples_per_epoch": samples, "num_workers": 0, "min_wet_fraction": 0.0}}
        with timed() as t:
            fit(options, store, times[5:40], times[60:66], seed=0, device=device, out_dir=Path(tmp) / "run")
    return {"what": "fit, 1 epoch end to end", "device": device, "batch": 8, "crop": 128, "samples_per_s": samples / t.seconds, "step_s": None, "peak_py_mb": t.peak_py_mb}


def run(quick: bool, device: str) -> dict[str, Any]:
    rows = _step_rows(device, quick)
    skipped = []
    if quick:
        skipped.append("fit (end-to-end epoch): full mode only")
    else:
        rows.append(_fit_row(device))
    notes = [
        "default ModelConfig (untrained), batch 8 of 128x128 crops (quick: 4 of 64x64); step = forward + loss + backward + AdamW",
        "fit: 64 samples, includes window selection, optical-flow guides, validation and checkpoint writing",
    ]
    return result(NAME, rows, columns=["what", "device", "batch", "crop", "samples_per_s", "step_s", "peak_py_mb", "gpu_peak_mb"], notes=notes, skipped=skipped)


if __name__ == "__main__":
    raise SystemExit(main(NAME, run))
