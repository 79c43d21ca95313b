"""The trained ConvLSTM weights shipped with the package, and their model cards.

``nowcast/models/weights/convlstm-<domain>.pt`` is a normal checkpoint (readable by
:func:`nowcast.models.convlstm.read_checkpoint`); ``convlstm-<domain>.card.json`` beside it is
its model card: data fingerprints, plan hash, code version, seed, scores, training time and
hardware. Domains: ``real`` (radar composites and X-band events of ``../shared/data``,
``configs/train-real.toml``) and ``synthetic`` (the embedded synthetic source).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: folder of the shipped weights
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DOMAINS = ("real", "synthetic")
#: the training configuration of each domain's shipped weights
TRAIN_CONFIGS = {"real": "configs/train-real-events-sprog-2kmcuts.toml", "synthetic": "configs/train-synthetic.toml"}


class MissingWeightsError(FileNotFoundError):
    """The shipped weights of a domain are not installed; the message says how to get them."""


def default_checkpoint(domain: str = "real") -> Path:
    """Path of the shipped checkpoint for ``domain`` ("real" or "synthetic")."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown weights domain {domain!r}; valid: {', '.join(DOMAINS)}")
    path = WEIGHTS_DIR / f"convlstm-{domain}.pt"
    if not path.is_file():
        raise MissingWeightsError(
            f"{path}: the shipped ConvLSTM weights ({domain}) are not installed; train them with "
            f"`nowcast train --config {TRAIN_CONFIGS[domain]}` and ship them (`python -m training.model_card ship`), or pass checkpoint=..."
        )
    return path


def card_path_for(checkpoint: str | Path) -> Path:
    """The model card beside a checkpoint: ``<name>.pt`` -> ``<name>.card.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".card.json")


def model_card_path(domain: str = "real") -> Path:
    return card_path_for(WEIGHTS_DIR / f"convlstm-{domain}.pt")


def model_card(domain: str = "real") -> dict[str, Any]:
    """The model card of the shipped weights (a dict; empty when none is installed)."""
    p = model_card_path(domain)
    return json.loads(p.read_text()) if p.is_file() else {}
