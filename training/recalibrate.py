"""Refit a checkpoint's lightning calibration, or its rain probability cuts for one resolution
class, on more validation data (the weights stay as they are).

The training loop fits the isotonic lightning calibration (:mod:`nowcast.models.lightning_calibration`)
on its validation windows only. When those are few (rare strokes, a short validation period),
the map can be fitted on a larger validation set afterwards: windows of one or more stores
(e.g. other seeds of the synthetic source, never the held-out test data) are run through the
network, the raw lightning probabilities are pooled per lead into a :class:`LightningHistogram`
and the calibration (and its CSI-optimal cuts per lead) is refitted. The new checkpoint records
which stores and periods it used (``lightning_calibration_data``).

    python -m training.recalibrate runs/convlstm-synthetic/best.pt --out runs/convlstm-synthetic/best-recal.pt \
        --store runs/synthetic-store.zarr 2024-06-02T08:00 2024-06-02T15:55 --store var/synthetic-calibration.zarr

With ``--cuts-class CELL_M`` it refits instead the probability cuts of the deterministic rain
field (:mod:`nowcast.models.calibration`) for grids of about ``CELL_M`` metres: the exceedance
probabilities of the given stores' windows, on their full frames (training validates on centre
crops), give that class its own cuts; the pooled cuts and any other class stay as they are
(``calibration_data`` records the data). Only validation data may be used, never events the
network was trained on (their probabilities are over-confident) nor test events.

    python -m training.recalibrate nowcast/models/weights/convlstm-real.pt --out var/convlstm-real-2km-cuts.pt \
        --cuts-class 2000 --store var/real/2km/mch-20150515.zarr
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nowcast.models.calibration import ExceedanceHistogram, ThresholdCalibration, nearest_class
from nowcast.models.lightning_calibration import LightningHistogram
from nowcast.models.weights import card_path_for
from nowcast.provenance import sha256_file
from training.model_card import calibration_fields

log = logging.getLogger(__name__)


def _full_frame_outputs(ckpt: dict[str, Any], path: Path, parts: list[tuple[str, pd.DatetimeIndex]], cache_dir: Path, batch_size: int) -> Iterator[tuple[dict[str, Any], Any]]:
    """(batch, network output) of the full-frame windows ending at the given times of
    each store (the training's window selection: rain filter, stride)."""
    import torch
    from torch.utils.data import DataLoader

    from nowcast.models.convlstm import build_network
    from nowcast.models.network import ModelConfig
    from nowcast.store import ObservationStore
    from training.config import TrainOptions
    from training.dataset import WindowDataset, select_windows

    cfg = ModelConfig.model_validate(ckpt["model_config"])
    opts = TrainOptions.model_validate(ckpt.get("train_config") or {})
    net = build_network(ckpt, path).eval()
    for url, times in parts:
        store = ObservationStore.open(url, mode="r")
        windows = select_windows(store, times, cfg, opts, cache_dir)
        ds = WindowDataset(store.url, windows, cfg, None, train=False, augment=False, seed=0, grid_shape=store.grid.shape)
        log.info("%s: %d windows", url, len(windows))
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0):
            with torch.inference_mode():
                out = net.forward_all(batch["inputs"], batch["guide"] if cfg.advection != "none" else None, batch["cell_size_m"])
            yield batch, out


def lightning_histogram(ckpt: dict[str, Any], path: Path, parts: list[tuple[str, pd.DatetimeIndex]], cache_dir: Path, batch_size: int = 4) -> tuple[LightningHistogram, int]:
    """Raw lightning probabilities of the checkpoint's network on the windows ending at the given
    times of each store, pooled per lead against the observed occurrence. Returns (histogram, windows)."""
    import torch

    from nowcast.models.network import ModelConfig

    cfg = ModelConfig.model_validate(ckpt["model_config"])
    if not cfg.lightning:
        raise ValueError(f"{path}: the model has no lightning head")
    hist = LightningHistogram(cfg.n_leads)
    n_windows = 0
    for batch, out in _full_frame_outputs(ckpt, path, parts, cache_dir, batch_size):
        hist.accumulate(torch.sigmoid(out.lightning_logit.float()).numpy(), batch["light"].numpy(), batch["light_mask"].numpy())
        n_windows += len(batch["inputs"])
    return hist, n_windows


def exceedance_histogram(ckpt: dict[str, Any], path: Path, parts: list[tuple[str, pd.DatetimeIndex]], cache_dir: Path, batch_size: int = 2) -> tuple[ExceedanceHistogram, int]:
    """Exceedance probabilities (n_leads, heads) of the checkpoint's network on the full-frame
    windows ending at the given times of each store, against the observed rain. Returns
    (histogram, windows)."""
    import torch

    from nowcast.models.network import ModelConfig

    cfg = ModelConfig.model_validate(ckpt["model_config"])
    if not cfg.probability_thresholds:
        raise ValueError(f"{path}: the model has no exceedance heads")
    hist = ExceedanceHistogram(tuple(cfg.probability_thresholds), cfg.n_leads)
    n_windows = 0
    for batch, out in _full_frame_outputs(ckpt, path, parts, cache_dir, batch_size):
        hist.accumulate(torch.sigmoid(out.exceedance_logit.float()).numpy(), batch["target_rate"].numpy(), batch["mask"].numpy())
        n_windows += len(batch["inputs"])
    return hist, n_windows


def recalibrate_cuts(path: Path, out: Path, parts: list[tuple[str, pd.DatetimeIndex]], cache_dir: Path, cell_size_m: float) -> Path:
    """Write ``out``: the checkpoint at ``path`` whose resolution class of ``cell_size_m`` metres
    gets probability cuts fitted on ``parts`` (stores of that class; full frames)."""
    from nowcast.models.convlstm import read_checkpoint
    from nowcast.store import ObservationStore
    from training.checkpoint import save_checkpoint

    ckpt = read_checkpoint(path)
    if not ckpt.get("calibration"):
        raise ValueError(f"{path}: the checkpoint has no probability cuts to refit")
    cal = ThresholdCalibration.from_dict(ckpt["calibration"])
    if cal.conditioned:
        raise ValueError(f"{path}: its cuts are conditioned on the residual guide; refitting them per class is not supported")
    for url, _ in parts:
        cell = ObservationStore.open(url, mode="r").grid.cell_size_m
        if nearest_class(cell, [cell_size_m]) is None:
            raise ValueError(f"{url}: cells of {cell:.0f} m are not in the class of {cell_size_m:g} m (within a factor of 2)")
    hist, n_windows = exceedance_histogram(ckpt, path, parts, cache_dir)
    if hist.positive.sum() == 0:
        raise ValueError("no observed rain above the thresholds in the given windows: nothing to fit cuts on")
    classes = [(c, k) for c, k in cal.classes if nearest_class(c, [cell_size_m]) is None]
    classes.append((float(cell_size_m), hist.optimal_cuts()))
    ckpt = {k: v for k, v in ckpt.items() if k not in ("format", "format_version")}
    ckpt["calibration"] = ThresholdCalibration(cal.thresholds, cal.cuts, tuple(sorted(classes, key=lambda c: c[0]))).to_dict()
    record = {
        "class_cell_size_m": float(cell_size_m),
        "parts": [{"store": url, "first": times[0].isoformat() if len(times) else None, "last": times[-1].isoformat() if len(times) else None, "n_times": len(times)} for url, times in parts],
        "n_windows": n_windows,
        "frames": "full",
        "source_checkpoint": str(path),
        "source_sha256": sha256_file(path),
    }
    # earlier refits of other classes keep their record (their cuts stay too)
    earlier = ckpt.get("calibration_data") or {}
    kept = [r for r in [{k: v for k, v in earlier.items() if k != "other_classes"}, *earlier.get("other_classes", [])] if r and nearest_class(r.get("class_cell_size_m"), [cell_size_m]) is None]
    ckpt["calibration_data"] = {**record, **({"other_classes": kept} if kept else {})}
    saved = save_checkpoint(out, ckpt)
    card = card_path_for(path)
    if card.is_file():  # the model card travels with the checkpoint, its cuts updated
        doc = {**json.loads(card.read_text()), **calibration_fields(ckpt)}
        card_path_for(out).write_text(json.dumps(doc, indent=1, default=str))
    return saved


def refit_class_cuts(path: Path, parts: list[tuple[str, pd.DatetimeIndex]], cache_dir: Path, classes_m: list[float]) -> None:
    """The training's last step (``train.full_frame_cuts_m``): rewrite the checkpoint at ``path``
    with the cuts of each class in ``classes_m`` refitted on the full frames of the validation
    ``parts`` (store URL, validation times) whose grids belong to it. A class without validation
    stores keeps its cuts (logged)."""
    from nowcast.store import ObservationStore

    cells = {url: ObservationStore.open(url, mode="r").grid.cell_size_m for url, _ in parts}
    for size in classes_m:
        mine = [(url, times) for url, times in parts if nearest_class(cells[url], [size]) is not None]
        if not mine:
            log.warning("no validation store on grids of about %g m: their cuts stay as fitted on the validation crops", size)
            continue
        log.info("refitting the cuts of grids of about %g m on the full frames of %d validation store(s)", size, len(mine))
        recalibrate_cuts(path, path, mine, cache_dir, size)


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
    p.add_argument("--cuts-class", type=float, default=None, metavar="CELL_M", help="refit the rain probability cuts of grids of about CELL_M metres (instead of the lightning calibration)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.cuts_class is not None:
            out = recalibrate_cuts(args.checkpoint, args.out, _parts(args.store), args.cache_dir, args.cuts_class)
        else:
            out = recalibrate(args.checkpoint, args.out, _parts(args.store), args.cache_dir)
    except ValueError as exc:
        sys.stderr.write(f"python -m training.recalibrate: {exc}\n")
        return 2
    sys.stdout.write(f"{out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
