"""``fit()``: train a ConvLSTM nowcaster on windows of an observation store (the public entry point).

Usage::

    from training.api import fit
    ckpt = fit({"model": {...}, "train": {...}}, store, train_times, val_times, seed=0, out_dir=Path("runs/a"))
    create_nowcaster("convlstm", checkpoint=ckpt)

Under ``torchrun`` every rank calls ``fit`` with the same arguments; see :mod:`training.ddp`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from nowcast import dims
from nowcast.models.convlstm import resolve_device
from nowcast.provenance import code_version_string, data_fingerprint, source_fingerprint
from training import ddp
from training.config import TrainOptions, parse_options, resolve_out_dir
from training.dataset import MultiStoreDataset, WindowDataset, select_windows, windows_fingerprint
from training.loop import Trainer, seed_everything

if TYPE_CHECKING:
    from nowcast.store import ObservationStoreLike

log = logging.getLogger(__name__)


def fit(
    options: dict[str, Any],
    store: ObservationStoreLike,
    train_times: pd.DatetimeIndex,
    val_times: pd.DatetimeIndex,
    *,
    seed: int,
    device: str = "auto",
    out_dir: Path,
    resume: str | Path | None = None,
) -> Path:
    """Train on windows whose last input frame is in ``train_times``; early-stop on ``val_times``.

    Parameters
    ----------
    options: ``{"model": {...}, "train": {...}}`` (the tables of a training config;
        :class:`nowcast.models.network.ModelConfig`, :class:`training.config.TrainOptions`).
    store: an observation store (:class:`nowcast.store.ObservationStoreLike`; its URL is
        reopened by data workers).
    train_times, val_times: candidate last-input-frame times (UTC); absent or too dry ones
        are skipped.
    seed: seeds python/numpy/torch, the sample order, crops and augmentation.
    device: "cpu", "cuda" or "auto".
    out_dir: receives ``best.pt``, ``last.pt``, ``metrics.csv`` and the guide cache.
    resume: a ``last.pt`` to continue from (same model config and windows).

    Returns the path of the best checkpoint (by validation CSI).
    """
    model_cfg, opts = parse_options(options)
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    ctx = ddp.init_from_env(resolve_device(device))
    try:
        out = resolve_out_dir(out_dir)
        seed_everything(seed)
        cache = Path(opts.cache_dir) if opts.cache_dir else out / "cache"
        train_times = dims.to_utc_index(train_times) if len(train_times) else pd.DatetimeIndex([])
        val_times = dims.to_utc_index(val_times) if len(val_times) else pd.DatetimeIndex([])
        overlap = train_times.intersection(val_times)
        if len(overlap):
            raise ValueError(f"train and validation times overlap ({len(overlap)} times, first {overlap[0]})")

        def select() -> tuple[list, list]:
            return select_windows(store, train_times, model_cfg, opts, cache), select_windows(store, val_times, model_cfg, opts, cache)

        # rank 0 computes the (expensive) guides first; the others then hit the cache
        if ctx.is_main:
            train_w, val_w = select()
        ddp.barrier(ctx)
        if not ctx.is_main:
            train_w, val_w = select()
        if not train_w:
            raise ValueError(f"no training windows: none of the {len(train_times)} train times is stored with >= {opts.min_wet_fraction} wet fraction")
        if not val_w:
            raise ValueError(f"no validation windows: none of the {len(val_times)} validation times is stored with >= {opts.min_wet_fraction} wet fraction")
        windows_hash = windows_fingerprint(train_w) + windows_fingerprint(val_w)
        meta = {
            "windows_hash": windows_hash,
            # content hash of the stored frames (nowcast.provenance), read once, by rank 0
            "data_fingerprint": data_fingerprint(store) if ctx.is_main else None,
            "source_fingerprint": source_fingerprint(store) if ctx.is_main else None,  # machine-independent
            "store": store.url,
            "store_version": store.version,
            "code_version": code_version_string(),
            "n_train_windows": len(train_w),
            "n_val_windows": len(val_w),
        }
        common = {"storage_options": getattr(store, "storage_options", None), "seed": seed, "grid_shape": store.grid.shape}
        train_ds = WindowDataset(store.url, train_w, model_cfg, opts.crop_size, train=True, augment=opts.augment, **common)
        val_ds = WindowDataset(store.url, val_w, model_cfg, opts.val_crop_size, train=False, augment=False, **common)
        log.info("training on %d windows, validating on %d (device %s, %d rank(s))", len(train_w), len(val_w), ctx.device, ctx.world_size)
        trainer = Trainer(model_cfg, opts, train_ds, val_ds, ctx=ctx, out_dir=out, seed=seed, meta=meta)
        best = trainer.run(resume)
        if ctx.is_main:
            _refit_full_frame_cuts(best, opts, [(store.url, val_times)], cache)
        ddp.barrier(ctx)
        return best
    finally:
        ddp.cleanup(ctx)


def fit_many(
    options: dict[str, Any],
    parts: list[tuple[ObservationStoreLike, pd.DatetimeIndex, pd.DatetimeIndex]],
    *,
    seed: int,
    device: str = "auto",
    out_dir: Path,
    resume: str | Path | None = None,
) -> Path:
    """Train on windows of several stores (events on their own grids); like :func:`fit`.

    ``parts``: ``(store, train_times, val_times)`` per store; either time index may be empty
    (a store used only for training or only for validation). Windows of all parts are pooled
    into one training and one validation set; items are cropped (``crop_size`` /
    ``val_crop_size``) and zero-padded (padding masked) to a common size so different grids
    batch together. Single process (no DDP). Returns the path of the best checkpoint.
    """
    model_cfg, opts = parse_options(options)
    if not parts:
        raise ValueError("fit_many needs at least one (store, train_times, val_times) part")
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    ctx = ddp.DistContext(device=resolve_device(device))
    out = resolve_out_dir(out_dir)
    seed_everything(seed)
    cache = Path(opts.cache_dir) if opts.cache_dir else out / "cache"
    train_parts: list[WindowDataset] = []
    val_parts: list[WindowDataset] = []
    val_times_of: list[tuple[str, pd.DatetimeIndex]] = []  # (store URL, validation times): the full-frame cut refit
    hashes: list[str] = []
    for i, (store, train_times, val_times) in enumerate(parts):
        tr = dims.to_utc_index(train_times) if len(train_times) else pd.DatetimeIndex([])
        va = dims.to_utc_index(val_times) if len(val_times) else pd.DatetimeIndex([])
        overlap = tr.intersection(va)
        if len(overlap):
            raise ValueError(f"{store.url}: train and validation times overlap ({len(overlap)} times, first {overlap[0]})")
        train_w = select_windows(store, tr, model_cfg, opts, cache) if len(tr) else []
        val_w = select_windows(store, va, model_cfg, opts, cache) if len(va) else []
        if len(va):
            val_times_of.append((store.url, va))
        hashes.append(f"{store.url}|{store.version}|{windows_fingerprint(train_w)}|{windows_fingerprint(val_w)}")
        common = {"storage_options": getattr(store, "storage_options", None), "seed": seed * 1000 + i, "grid_shape": store.grid.shape}
        if train_w:
            train_parts.append(WindowDataset(store.url, train_w, model_cfg, opts.crop_size, train=True, augment=opts.augment, **common))
        if val_w:
            val_parts.append(WindowDataset(store.url, val_w, model_cfg, opts.val_crop_size, train=False, augment=False, **common))
        log.info("%s: %d training, %d validation windows", store.url, len(train_w), len(val_w))
    if not train_parts:
        raise ValueError(f"no training windows in any of the {len(parts)} stores (min wet fraction {opts.min_wet_fraction})")
    if not val_parts:
        raise ValueError(f"no validation windows in any of the {len(parts)} stores (min wet fraction {opts.min_wet_fraction})")
    import hashlib

    windows_hash = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:32]
    train_ds, val_ds = MultiStoreDataset(train_parts), MultiStoreDataset(val_parts)
    meta = {
        "windows_hash": windows_hash,
        "data_fingerprint": _combined_fingerprint([data_fingerprint(s) for s, _, _ in parts]),
        "source_fingerprint": _combined_source_fingerprint([source_fingerprint(s) for s, _, _ in parts]),
        "store": ";".join(s.url for s, _, _ in parts),
        "store_version": ";".join(str(s.version) for s, _, _ in parts),
        "code_version": code_version_string(),
        "n_train_windows": len(train_ds),
        "n_val_windows": len(val_ds),
    }
    log.info("training on %d windows of %d stores, validating on %d", len(train_ds), len(train_parts), len(val_ds))
    trainer = Trainer(model_cfg, opts, train_ds, val_ds, ctx=ctx, out_dir=out, seed=seed, meta=meta)
    best = trainer.run(resume)
    _refit_full_frame_cuts(best, opts, val_times_of, cache)
    return best


def _refit_full_frame_cuts(best: Path, opts: TrainOptions, val_parts: list[tuple[str, pd.DatetimeIndex]], cache: Path) -> None:
    """``train.full_frame_cuts_m``: refit those classes' cuts of ``best`` on full validation frames."""
    if not opts.full_frame_cuts_m:
        return
    from training.recalibrate import refit_class_cuts

    refit_class_cuts(best, val_parts, cache, list(opts.full_frame_cuts_m))


def _combined_fingerprint(fingerprints: list[str]) -> str:
    """One store: its content fingerprint; several: SHA-256 (16 hex digits) of theirs, in order."""
    if len(fingerprints) == 1:
        return fingerprints[0]
    import hashlib

    return hashlib.sha256("\n".join(fingerprints).encode()).hexdigest()[:16]


def _combined_source_fingerprint(fingerprints: list[str | None]) -> str | None:
    """Like :func:`_combined_fingerprint` for source fingerprints; None when a store has none."""
    known = [f for f in fingerprints if f is not None]
    return _combined_fingerprint(known) if len(known) == len(fingerprints) else None
