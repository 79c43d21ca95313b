"""Model cards: what a trained checkpoint was made from, how, and how well it scores.

A card is JSON beside its checkpoint (``<name>.card.json``): data fingerprints (SHA-256 of the
rain bytes of every frame of every event used, and the machine-independent source fingerprint of
the files they were imported from), the training configuration and its hash, code
version, seed, validation scores and probability cuts, training time and hardware; the
event-blocked DAP results (plan hash, pooled held-out scores) are added by
:func:`attach_evaluation`. :func:`ship` writes a weights-only copy of a checkpoint with its
card into the package (``nowcast/models/weights``).

    python -m training.model_card ship runs/convlstm-real-events/best.pt --domain real \
        [--evaluation results/real-events-kfold-sprog/results.json]
    python -m training.model_card compare CKPT REFERENCE [--out FILE]   # how far two checkpoints are
    python -m training.model_card prior CKPT [--out FILE]               # the learned prior's scales
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.durability import atomic_path
from nowcast.models.calibration import ThresholdCalibration
from nowcast.models.weights import card_path_for
from nowcast.provenance import code_version_string, sha256_file


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor name elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str) -> dict[str, Any]:
    """Where the training ran: CPU model and cores, torch threads, GPU name when used."""
    import torch

    info: dict[str, Any] = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device, "torch": torch.__version__}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def calibration_fields(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A card's probability cuts and, after a full-frame refit, the data they were fitted on."""
    return {"calibration": ckpt.get("calibration"), **({"calibration_data": ckpt["calibration_data"]} if ckpt.get("calibration_data") else {})}


def write_model_card(
    checkpoint: Path,
    *,
    config_path: str | Path,
    train_events: list[str],
    validation_events: list[str],
    stores: dict[str, Any],
    train_seconds: float,
    device: str,
) -> Path:
    """Write ``<checkpoint stem>.card.json`` beside ``checkpoint``; returns its path."""
    import torch

    from nowcast.provenance import data_fingerprint, source_fingerprint

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cfg_text = Path(config_path).read_bytes()
    card = {
        "model": "convlstm",
        "checkpoint_sha256": sha256_file(checkpoint),
        "code_version": code_version_string(),
        "config": str(config_path),
        "config_sha256": hashlib.sha256(cfg_text).hexdigest(),
        "seed": ckpt.get("seed"),
        "model_config": ckpt.get("model_config"),
        "data": {
            name: {"role": "train" if name in train_events else "validation", "store": str(getattr(s, "url", "")), "fingerprint": data_fingerprint(s), "source_fingerprint": source_fingerprint(s), "n_frames": len(s.times()), "cadence_minutes": s.cadence.total_seconds() / 60}
            for name, s in stores.items()
            if name in train_events or name in validation_events
        },
        "validation": ckpt.get("metrics"),
        "best_epoch": (ckpt.get("trainer") or {}).get("best_epoch"),
        **calibration_fields(ckpt),
        "train_seconds": round(float(train_seconds), 1),
        "hardware": hardware(device),
    }
    path = card_path_for(checkpoint)
    path.write_text(json.dumps(card, indent=1, default=str))
    return path


def lightning_statement(ckpt: dict[str, Any], cell_km: float, cadence_minutes: float) -> str | None:
    """What the checkpoint's lightning probability means (None without a lightning calibration)."""
    cal = ckpt.get("lightning_calibration")
    if not cal:
        return None
    return (
        f"probability of at least one lightning stroke in a {cell_km:g} km x {cell_km:g} km grid cell during the "
        f"{cadence_minutes:g}-minute interval ending at the lead time; {cal.get('method', '?')} calibration per lead "
        "fitted on the validation windows only"
    )


def write_store_model_card(checkpoint: Path, *, config_path: str | Path, train_seconds: float, device: str, load_average: list[float] | None = None) -> Path:
    """The model card of a ``[data]`` (one store) training run, e.g. the synthetic weights:
    like :func:`write_model_card` with the store's fingerprint and the train/val periods."""
    import torch

    from nowcast.config import load_config
    from nowcast.provenance import data_fingerprint, source_fingerprint
    from nowcast.store import ObservationStore
    from training.config import TrainConfig

    cfg = load_config(TrainConfig, config_path, [])
    if cfg.data is None:
        raise ValueError(f"{config_path}: no [data] table (use write_model_card for event catalogues)")
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    store = ObservationStore.open(cfg.data.store, mode="r", storage_options=cfg.data.storage_options)
    cell_km = abs(store.grid.dx) / 1000.0
    cadence_min = store.cadence.total_seconds() / 60
    card = {
        "model": "convlstm",
        "checkpoint_sha256": sha256_file(checkpoint),
        "code_version": code_version_string(),
        "config": str(config_path),
        "config_sha256": hashlib.sha256(Path(config_path).read_bytes()).hexdigest(),
        "seed": ckpt.get("seed"),
        "model_config": ckpt.get("model_config"),
        "data": {
            "store": str(cfg.data.store),
            "synthetic_seed": cfg.data.synthetic_seed,
            "fingerprint": data_fingerprint(store),
            "source_fingerprint": source_fingerprint(store),
            "n_frames": len(store.times()),
            "cadence_minutes": cadence_min,
            "cell_km": cell_km,
            "grid_shape": list(store.grid.shape),
            "train_periods": [list(p) for p in cfg.data.train],
            "validation_periods": [list(p) for p in cfg.data.val],
            "n_train_windows": ckpt.get("n_train_windows"),
            "n_val_windows": ckpt.get("n_val_windows"),
        },
        "validation": ckpt.get("metrics"),
        "best_epoch": (ckpt.get("trainer") or {}).get("best_epoch"),
        **calibration_fields(ckpt),
        "lightning_probability": lightning_statement(ckpt, cell_km, cadence_min),
        "train_seconds": round(float(train_seconds), 1),
        "hardware": {**hardware(device), **({"load_average": load_average} if load_average else {})},
    }
    path = card_path_for(checkpoint)
    path.write_text(json.dumps(card, indent=1, default=str))
    return path


def _evaluation_source(path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """Where a card's evaluation comes from: the result file, its hash and the plan that made it."""
    return {"results": str(path), "results_sha256": sha256_file(path), "plan": doc.get("plan"), "plan_hash": doc.get("plan_hash")}


def attach_evaluation(card: dict[str, Any], results_path: Path) -> dict[str, Any]:
    """Add the event-blocked DAP results (plan hash, pooled held-out CSI/MCC) to a card."""
    res = json.loads(results_path.read_text())
    card = dict(card)
    card["evaluation"] = {
        **_evaluation_source(results_path, res),
        "minutes": res.get("minutes"),
        "thresholds": res.get("thresholds"),
        "held_out": {c: {"events": e["events"], "scores": {m: {k: v for k, v in s.items() if k in ("csi", "mcc")} for m, s in e["scores"].items()}} for c, e in res.get("classes", {}).items()},
    }
    return card


def attach_lightning_summary(card: dict[str, Any], summary_path: Path) -> dict[str, Any]:
    """Add the held-out lightning targets (``python -m training.dap.lightning``) to a card."""
    doc = json.loads(summary_path.read_text())
    card = dict(card)
    card["evaluation"] = {
        **_evaluation_source(summary_path, doc),
        "store": doc.get("store"),
        "event": doc.get("event"),
        "probability_threshold": doc.get("probability_threshold"),
        "lead_minutes": doc.get("lead_minutes"),
        "lightning_csi": doc.get("csi"),
        "lightning_bss": doc.get("bss"),
        "targets": {k: {kk: vv for kk, vv in v.items() if kk != "bins"} for k, v in doc.get("targets", {}).items()},
    }
    return card


def ship(checkpoint: Path, domain: str, evaluation: Path | None = None, lightning_summary: Path | None = None, notes: list[str] | None = None) -> tuple[Path, Path]:
    """Copy ``checkpoint`` (weights, config, calibration, metadata; no optimiser state) and its
    card into the package's weights folder as ``convlstm-<domain>.pt`` / ``.card.json``."""
    import torch

    from nowcast.models.weights import WEIGHTS_DIR

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    slim = {k: v for k, v in ckpt.items() if k not in ("optimizer",)}
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    dst = WEIGHTS_DIR / f"convlstm-{domain}.pt"
    with atomic_path(dst) as tmp:
        torch.save(slim, tmp)
    src_card = card_path_for(checkpoint)
    card = json.loads(src_card.read_text()) if src_card.is_file() else {}
    card["shipped_sha256"] = sha256_file(dst)
    card["source_checkpoint"] = str(checkpoint)
    if evaluation is not None:
        card = attach_evaluation(card, evaluation)
    if lightning_summary is not None:
        card = attach_lightning_summary(card, lightning_summary)
    if notes:
        card["notes"] = list(notes)
    card_path = card_path_for(dst)
    card_path.write_text(json.dumps(card, indent=1, default=str))
    return dst, card_path


def compare(a: Path, b: Path) -> dict[str, Any]:
    """How far checkpoint ``a`` (e.g. a retrain) is from ``b`` (e.g. the shipped file): per-tensor
    weight differences, equality of architecture and probability cuts, best epoch and validation
    score, and each one's card (config, training time, hardware)."""
    import torch

    from training.dap.ledger import now_iso

    ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    sa, sb = ca["state_dict"], cb["state_dict"]
    if set(sa) != set(sb) or any(sa[k].shape != sb[k].shape for k in sa):
        raise ValueError(f"{a} and {b} hold different networks (tensor names or shapes differ)")
    diffs = {k: float((sa[k].double() - sb[k].double()).abs().max()) if sa[k].numel() else 0.0 for k in sb}
    scale = max((float(sb[k].double().abs().max()) for k in sb if sb[k].numel()), default=0.0)

    def side(path: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
        card_path = card_path_for(path)
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        trainer = ckpt.get("trainer") or {}
        return {
            "path": str(path), "sha256": sha256_file(path), "best_epoch": trainer.get("best_epoch"), "best_validation_score": trainer.get("best_score"),
            "calibration_data": ckpt.get("calibration_data"), "config": card.get("config"), "config_sha256": card.get("config_sha256"),
            "code_version": card.get("code_version"), "train_seconds": card.get("train_seconds"), "hardware": card.get("hardware"),
        }

    worst = max(diffs, key=diffs.get) if diffs else None
    return {
        "time": now_iso(),
        "code_version": code_version_string(),
        "a": side(a, ca),
        "b": side(b, cb),
        "same_model_config": ca.get("model_config") == cb.get("model_config"),
        "n_tensors": len(diffs),
        "n_identical_tensors": sum(1 for v in diffs.values() if v == 0.0),
        "max_abs_weight_difference": diffs[worst] if worst else 0.0,
        "max_abs_weight_difference_tensor": worst,
        "largest_abs_weight": scale,
        "calibration_equal": ca.get("calibration") == cb.get("calibration"),
        "calibration_max_abs_difference": _cuts_difference(ca.get("calibration"), cb.get("calibration")),
    }


def _cuts_difference(x: dict[str, Any] | None, y: dict[str, Any] | None) -> float | None:
    """Largest absolute difference between the cuts (pooled and per class) of two calibrations;
    None when either has none or their layouts (shapes, classes) differ."""
    if not x or not y:
        return None
    cx, cy = ThresholdCalibration.from_dict(x), ThresholdCalibration.from_dict(y)
    if [c for c, _ in cx.classes] != [c for c, _ in cy.classes]:
        return None
    pairs = [(cx.cuts, cy.cuts), *((u, v) for (_, u), (_, v) in zip(cx.classes, cy.classes, strict=True))]
    if any(u.shape != v.shape for u, v in pairs):
        return None
    return max(float(np.abs(u - v).max()) for u, v in pairs)


def prior_scales(checkpoint: Path) -> dict[str, Any]:
    """How far the learned neighbourhood prior spreads each guide's exceedance, per class and lead.

    Per resolution class (``model.prior_classes_m``; one entry "all grids" without classes), lead
    (minutes) and threshold (mm/h): the prior's weights on the pyramid scales 1, 2, 4, ... cells
    (summed over the guide sources) and their geometric-mean scale in cells (and km for a class).
    """
    import torch

    from nowcast.models.convlstm import read_checkpoint
    from nowcast.models.network import ModelConfig

    ckpt = read_checkpoint(checkpoint)
    cfg = ModelConfig.model_validate(ckpt["model_config"])
    if not cfg.prior_levels or "prior_logits" not in ckpt["state_dict"]:
        raise ValueError(f"{checkpoint}: the model has no learned neighbourhood prior (prior_levels = 0)")
    logits = ckpt["state_dict"]["prior_logits"].float()
    if not cfg.prior_classes_m:
        logits = logits[None]
    weights = torch.softmax(logits, dim=-1)  # (C, K, T, S * L)
    c, k, t, _ = weights.shape
    by_scale = weights.reshape(c, k, t, len(cfg.guide_sources), cfg.prior_levels).sum(dim=3)  # (C, K, T, L)
    log2_mean = (by_scale * torch.arange(cfg.prior_levels, dtype=torch.float32)).sum(-1)
    classes: dict[str, Any] = {}
    for ci in range(c):
        cell = cfg.prior_classes_m[ci] if cfg.prior_classes_m else None
        leads = {}
        for ki in range(k):
            leads[str((ki + 1) * cfg.cadence_minutes)] = {
                f"{thr:g}": {
                    "weights_by_scale_cells": {str(2**lv): round(float(by_scale[ci, ki, ti, lv]), 4) for lv in range(cfg.prior_levels)},
                    "mean_scale_cells": round(float(2 ** log2_mean[ci, ki, ti]), 3),
                    **({"mean_scale_km": round(float(2 ** log2_mean[ci, ki, ti]) * cell / 1000.0, 3)} if cell else {}),
                }
                for ti, thr in enumerate(cfg.probability_thresholds)
            }
        classes[f"{cell:g} m" if cell else "all grids"] = leads
    return {"checkpoint": str(checkpoint), "sha256": sha256_file(checkpoint), "guide_sources": list(cfg.guide_sources), "classes": classes}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.model_card", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("ship", help="copy a checkpoint and its card into nowcast/models/weights")
    s.add_argument("checkpoint", type=Path)
    s.add_argument("--domain", choices=["real", "synthetic"], required=True)
    s.add_argument("--evaluation", type=Path, default=None, help="results.json of the event-blocked DAP run")
    s.add_argument("--lightning-summary", type=Path, default=None, help="lightning-summary.json of the held-out DAP run (synthetic)")
    s.add_argument("--note", action="append", default=[], help="a remark recorded in the card (repeatable)")
    c = sub.add_parser("card", help="write the model card of a [data] (one store) training run beside its checkpoint")
    c.add_argument("checkpoint", type=Path)
    c.add_argument("--config", type=Path, required=True, help="the training configuration it was trained with")
    c.add_argument("--train-seconds", type=float, required=True, help="measured wall time of `nowcast train`")
    c.add_argument("--device", default="cpu")
    c.add_argument("--load-average", type=float, nargs=3, default=None, help="1/5/15-min load average during training")
    k = sub.add_parser("compare", help="how far a checkpoint (e.g. a retrain) is from another (e.g. the shipped file); JSON")
    k.add_argument("checkpoint", type=Path)
    k.add_argument("reference", type=Path)
    k.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    q = sub.add_parser("prior", help="the learned neighbourhood prior's scales per class and lead (JSON; a table on stdout)")
    q.add_argument("checkpoint", type=Path)
    q.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = p.parse_args(argv)
    if args.action == "prior":
        try:
            doc = prior_scales(args.checkpoint)
        except (ValueError, FileNotFoundError) as exc:  # CheckpointError is a ValueError
            sys.stderr.write(f"python -m training.model_card prior: {exc}\n")
            return 2
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(doc, indent=1) + "\n")
        for name, leads in doc["classes"].items():
            for lead, thrs in leads.items():
                row = "  ".join(f"{thr} mm/h {v['mean_scale_cells']:6.2f} cells" + (f" ({v['mean_scale_km']:.2f} km)" if "mean_scale_km" in v else "") for thr, v in thrs.items())
                sys.stdout.write(f"{name:>10s} {lead:>3s} min  {row}\n")
        return 0
    if args.action == "compare":
        try:
            doc = compare(args.checkpoint, args.reference)
        except (ValueError, FileNotFoundError) as exc:
            sys.stderr.write(f"python -m training.model_card compare: {exc}\n")
            return 2
        text = json.dumps(doc, indent=1, default=str)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
        sys.stdout.write(text + "\n")
        return 0
    if args.action == "card":
        path = write_store_model_card(args.checkpoint, config_path=args.config, train_seconds=args.train_seconds, device=args.device, load_average=args.load_average)
        sys.stdout.write(f"{path}\n")
        return 0
    dst, card = ship(args.checkpoint, args.domain, args.evaluation, args.lightning_summary, args.note)
    sys.stdout.write(f"{dst} ({dst.stat().st_size / 1e6:.2f} MB)\n{card}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
