"""Forecast wall time: ConvLSTM vs pysteps-based extrapolation vs S-PROG on 256/512/1024 grids.

Every model gets the same seeded synthetic history (``SyntheticRadar``, 2 km cells) and the
same 15 leads (5..75 min) in the same process; times are medians over repeats after one warm-up
call. The ConvLSTM is the shipped real-data model (``nowcast/models/weights/convlstm-real.pt``:
its architecture, guide smoothing, exceedance heads and calibration), or, when no weights are
installed, an untrained network of the default ``ModelConfig``; its cost does not depend on
the weights. Ratios are relative to extrapolation on the same grid. S-PROG runs twice: as pysteps' own
``sprog.forecast`` (the reference, the ``sprog`` default) and with its motion trajectory shared
(``share_trajectory=True``, identical output), which is how the ConvLSTM computes its S-PROG guide.
With ``--device cuda`` the ConvLSTM runs on the GPU (bf16 autocast, as in the service) and the
network alone is also timed in bf16 and fp32.

Runnable alone: ``python benchmarks/bench_models.py [--quick] [--device cuda]``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from common import main, median, repeat, result, timed  # type: ignore[import-not-found]

NAME = "models"
#: "sprog" is pysteps' own sprog.forecast (the reference); "sprog-shared" the same S-PROG with the
#: motion integrated once and shared by its fields (equal output), as the ConvLSTM's guide runs it
MODELS = ("extrapolation", "sprog", "sprog-shared", "convlstm")


def _history(size: int, n: int, seed: int = 11):
    import pandas as pd

    from nowcast.sources.synthetic import SyntheticRadar

    radar = SyntheticRadar(SyntheticRadar.default_grid(nx=size, ny=size, resolution=2000.0), seed=seed, wet_fraction=0.3, cell_rate=5.0)
    times = pd.date_range("2024-06-01T12:00", periods=n, freq="5min")
    return radar.frames(times)


def _checkpoint(folder: Path) -> Path:
    import torch

    from nowcast.models.weights import MissingWeightsError, default_checkpoint

    try:
        return default_checkpoint("real")
    except MissingWeightsError:
        pass

    from nowcast.models.network import EncoderForecaster, ModelConfig
    from training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig()
    net = EncoderForecaster(cfg)
    path = folder / "convlstm-untrained.pt"
    save_checkpoint(path, {"model_config": cfg.model_dump(), "state_dict": net.state_dict(), "train_config": {}, "metrics": {}})
    return path


def _network_rows(nowcaster: Any, history: Any, size: int, repeats: int) -> list[dict[str, Any]]:
    """The network alone on CUDA, bf16 autocast vs fp32 (the same input tensors)."""
    import numpy as np
    import torch

    from nowcast import dims
    from nowcast.models.convlstm import guide_features, input_features, pad_to_multiple

    cfg = nowcaster.config
    rain = np.asarray(history[dims.RAIN_RATE].values, dtype=np.float32)
    light = np.asarray(history[dims.LIGHTNING].values, dtype=np.float32)
    mult = max(1, int(np.prod(cfg.strides)))
    x, _ = pad_to_multiple(input_features(rain, light, cfg), mult)
    g = guide_features(rain, light, cfg)
    xt = torch.from_numpy(x)[None].to(nowcaster.device)
    gt = None if g is None else torch.from_numpy(pad_to_multiple(g, mult)[0])[None].to(nowcaster.device)
    rows = []
    for precision, bf16 in (("bf16", True), ("fp32", False)):

        def step(b: bool = bf16) -> None:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=b):
                nowcaster.net(xt, gt)
            torch.cuda.synchronize()

        torch.cuda.reset_peak_memory_stats()
        times = repeat(step, repeats)
        rows.append(
            {
                "grid": f"{size}x{size}",
                "model": f"convlstm network only ({precision})",
                "device": "cuda",
                "forecast_s": median(times),
                "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20,
            }
        )
    return rows


def run(quick: bool, device: str) -> dict[str, Any]:
    import pandas as pd

    from nowcast.models import create_nowcaster

    sizes = (256, 512) if quick else (256, 512, 1024)
    repeats = 1 if quick else 5
    leads = [pd.Timedelta(minutes=5 * i) for i in range(1, 16)]
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nowcast-bench-models-") as tmp:
        ckpt = _checkpoint(Path(tmp))
        models = {
            "extrapolation": create_nowcaster("extrapolation"),
            "sprog": create_nowcaster("sprog"),
            "sprog-shared": create_nowcaster("sprog", share_trajectory=True),
            "convlstm": create_nowcaster("convlstm", checkpoint=str(ckpt), device=device),
        }
        n_hist = max(int(m.n_inputs) for m in models.values())
        for size in sizes:
            history = _history(size, n_hist)
            base = None
            for name in MODELS:
                m = models[name]
                hist = history.isel(time=slice(-int(m.n_inputs), None))
                with timed() as t:
                    times = repeat(lambda m=m, h=hist: m.forecast(h, leads), repeats)
                s = median(times)
                if name == "extrapolation":
                    base = s
                rows.append(
                    {
                        "grid": f"{size}x{size}",
                        "model": name,
                        "device": device if name == "convlstm" else "cpu",
                        "forecast_s": s,
                        "vs_extrapolation": s / base if base else None,
                        "peak_py_mb": t.peak_py_mb,
                    }
                )
            if device == "cuda":
                rows.extend(_network_rows(models["convlstm"], history.isel(time=slice(-int(models["convlstm"].n_inputs), None)), size, repeats))
    if device != "cuda":
        notes.append("bf16 vs fp32 rows need --device cuda (autocast bf16 is used on CUDA only)")
    notes += [
        f"median of {repeats} runs after one warm-up, 15 leads (5-75 min), seeded synthetic history, 2 km cells",
        f"convlstm: {'the shipped real-data model (nowcast/models/weights/convlstm-real.pt)' if 'weights' in str(ckpt) else 'untrained default ModelConfig (no shipped weights installed)'}; its time includes its guides (S-PROG and LK extrapolation nowcasts on one shared motion trajectory, see its model_config.guide_sources), the network, the neighbourhood prior and the calibration",
        "sprog: pysteps' sprog.forecast as the sprog nowcaster calls it by default (the reference); sprog-shared: the same nowcaster with share_trajectory=True (identical output, motion integrated once)",
        "extrapolation and sprog always run on the CPU (pysteps/numpy)",
    ]
    return result(NAME, rows, columns=["grid", "model", "device", "forecast_s", "vs_extrapolation", "peak_py_mb", "gpu_peak_mb"], notes=notes)


if __name__ == "__main__":
    raise SystemExit(main(NAME, run))
