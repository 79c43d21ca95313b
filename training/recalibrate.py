"""Refit a checkpoint's lightning calibration on more validation data (the weights stay as they are).

The training loop fits the isotonic lightning calibration (:mod:`nowcast.models.lightning_calibration`)
on its validation windows only. When those are few (rare strokes, a short validation period),
the map can be fitted on a larger validation set afterwards: windows of one or more stores
(e.g. other seeds of the synthetic source, never the held-out test data) are run through the
network, the raw lightning probabilities are pooled per lead into a :class:`LightningHistogram`
and the calibration (and its CSI-optimal cuts per lead) is refitted. The new checkpoint records
which stores and periods it used (``lightning_calibration_data``).

    python -m training.recalibrate runs/convlstm-synthetic/best.pt --out runs/convlstm-synthetic/best-recal.pt \
        --store runs/synthetic-store.zarr 2024-06-02T08:00 2024-06-02T15:55 --store var/synthetic-calibration.zarr
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nowcast.models.lightning_calibration import LightningHistogram

log = logging.getLogger(__name__)


def lightning_histogram(ckpt: dict[str, Any], path: Path, parts: list[tuple[str, pd.DatetimeIndex]], cache_dir: Path, batch_size: int = 4) -> tuple[LightningHistogram, int]:
    """Raw lightning probabilities of the checkpoint's network on the windows ending at the given
    times of each store, pooled per lead against the observed occurrence. Returns (histogram, windows)."""
    import torch
    from torch.utils.data import DataLoader

    from nowcast.models.convlstm import build_network
    from nowcast.models.network import ModelConfig
    from nowcast.store import ObservationStore
    from training.config import TrainOptions
    from training.dataset import WindowDataset, select_windows

    cfg = ModelConfig.model_validate(ckpt["model_config"])
    if not cfg.lightning:
        raise ValueError(f"{path}: the model has no lightning head")
    opts = TrainOptions.model_validate(ckpt.get("train_config") or {})
    net = build_network(ckpt, path).eval()
    hist = LightningHistogram(cfg.n_leads)
    n_windows = 0
    for url, times in parts:
        store = ObservationStore.open(url, mode="r")
        windows = select_windows(store, times, cfg, opts, cache_dir)
        ds = WindowDataset(store.url, windows, cfg, None, train=False, augment=False, seed=0, grid_shape=store.grid.shape)
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0):
            with torch.inference_mode():
                out = net.forward_all(batch["inputs"], batch["guide"] if cfg.advection != "none" else None)
            hist.accumulate(torch.sigmoid(out.lightning_logit.float()).numpy(), batch["light"].numpy(), batch["light_mask"].numpy())
        n_windows += len(windows)
        log.info("%s: %d windows", url, len(windows))
    return hist, n_windows


def recalibrate(path: Path, out: Path, parts: list[tuple[str, pd.DatetimeIndex]], cache_dir: Path) -> Path:
    """Write ``out``: the checkpoint at ``path`` with its lightning calibration refitted on ``parts``."""
    from nowcast.models.convlstm import read_checkpoint
    from training.checkpoint import save_checkpoint

    ckpt = read_checkpoint(path)
    hist, n_windows = lightning_histogram(ckpt, path, parts, cache_dir)
    cal = hist.fit()
    cuts, best = hist.csi_cuts(cal)
    ckpt = {k: v for k, v in ckpt.items() if k not in ("format", "format_version")}
    ckpt["lightning_calibration"] = {**cal.to_dict(), "validation_csi_cuts": {"cut": cuts.tolist(), "csi": [None if not np.isfinite(v) else float(v) for v in best]}}
    ckpt["lightning_calibration_data"] = {
        "parts": [{"store": url, "first": times[0].isoformat() if len(times) else None, "last": times[-1].isoformat() if len(times) else None, "n_times": len(times)} for url, times in parts],
        "n_windows": n_windows,
        "events": int(hist.positive.sum()),
        "cases": int(hist.positive.sum() + hist.negative.sum()),
        "source_checkpoint": str(path),
    }
    return save_checkpoint(out, ckpt)


def _parts(specs: list[list[str]]) -> list[tuple[str, pd.DatetimeIndex]]:
    from nowcast.store import ObservationStore

    parts = []
    for spec in specs:
        url, *period = spec
        times = ObservationStore.open(url, mode="r").times()
        if period:
            if len(period) != 2:
                raise ValueError(f"--store {url}: give no period or FIRST LAST, got {period}")
            times = times[(times >= pd.Timestamp(period[0])) & (times <= pd.Timestamp(period[1]))]
        parts.append((url, times))
    return parts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.recalibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--store", nargs="+", action="append", required=True, metavar="URL [FIRST LAST]", help="validation store and optional period of window end times (repeatable)")
    p.add_argument("--cache-dir", type=Path, default=Path("var/cache/recalibrate"), help="guide cache")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = recalibrate(args.checkpoint, args.out, _parts(args.store), args.cache_dir)
    sys.stdout.write(f"{out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
