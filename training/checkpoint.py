"""Writing and resuming training checkpoints.

A checkpoint is one ``torch.save`` file holding only plain types and tensors (it loads with
``weights_only=True``)::

    format, format_version      "nowcast.convlstm", 1
    model_config, train_config  the [model] / [train] tables (dicts)
    state_dict                  network weights
    optimizer                   optimiser state (for --resume)
    trainer                     {"epoch", "best_score", "best_epoch", "bad_epochs"}
    history                     per-epoch metrics (list of dicts)
    metrics                     the metrics of the epoch the weights come from
    data_fingerprint            content SHA-256 of the stored rain frames (:func:`nowcast.provenance.data_fingerprint`;
                                several stores: the hash of theirs, in order)
    windows_hash                hash of the window times alone
    code_version                :func:`nowcast.provenance.code_version_string`
    seed

Reading and checking lives next to the model (:mod:`nowcast.models.convlstm`), so inference
does not depend on this package; :class:`CheckpointError` is re-exported here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from nowcast.durability import atomic_path
from nowcast.models.convlstm import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    CheckpointError,
    build_network,
    read_checkpoint,
)
from nowcast.models.network import ModelConfig

__all__ = ["CheckpointError", "load_for_resume", "read_checkpoint", "save_checkpoint", "build_network"]

log = logging.getLogger(__name__)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (see the module docstring) atomically to ``path``."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_for_resume(path: str | Path, model_config: ModelConfig, windows_hash: str) -> dict[str, Any]:
    """Read a checkpoint to continue training; it must match the model config and the windows.

    Returns the checkpoint dict with ``"network"`` (the rebuilt network, on CPU) added.
    Raises :class:`CheckpointError` naming the file and the mismatch.
    """
    ckpt = read_checkpoint(path)
    net = build_network(ckpt, path, expected=model_config)
    for key in ("optimizer", "trainer"):
        if key not in ckpt:
            raise CheckpointError(path, f"cannot resume: checkpoint has no {key!r} state")
    if ckpt.get("windows_hash") != windows_hash:
        raise CheckpointError(path, "cannot resume: it was trained on different windows (data fingerprint differs)")
    ckpt["network"] = net
    return ckpt
