"""The training configuration: ``[model]`` (architecture), ``[train]`` (optimisation, data
windows, loss) and ``[data]`` (which store, which periods) tables of a TOML/YAML file.

``fit()`` takes the ``model``/``train`` tables as a dict; the ``data`` table is read by the
``nowcast train`` command only. See docs/training.md for every key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nowcast.models.network import ModelConfig


class TrainOptions(BaseModel):
    """Optimisation, windows, augmentation, loss and early stopping (the ``[train]`` table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(8, ge=1, description="global batch (divided among DDP ranks)")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables")
    # windows
    crop_size: int | None = Field(128, ge=8, description="random square crop for training; None = full frame")
    val_crop_size: int | None = Field(None, ge=8, description="centre crop for validation; None = full frame")
    min_wet_fraction: float = Field(0.01, ge=0, le=1, description="skip windows whose last input frame has fewer wet covered cells")
    window_stride: int = Field(1, ge=1, description="use every n-th candidate time (per store) as a window end; 2 halves the guide cost of 5-min data")
    wet_threshold: float = Field(0.1, gt=0, description="mm/h; a cell at or above is wet")
    augment: bool = Field(True, description="random flips and 90-degree rotations (training only)")
    samples_per_epoch: int | None = Field(None, ge=1, description="None = every training window once per epoch")
    num_workers: int = Field(0, ge=0, description="DataLoader workers (spawn start method)")
    cache_dir: str | None = Field(None, description="cache of extrapolation guides; None = <out_dir>/cache")
    # loss
    intensity_thresholds: list[float] = Field(default_factory=lambda: [0.5, 2.0, 5.0, 10.0, 30.0], description="mm/h edges of the weight classes")
    intensity_weights: list[float] = Field(default_factory=lambda: [1.0, 2.0, 5.0, 10.0, 30.0, 50.0], description="weight per class (one more than edges)")
    mse_weight: float = Field(1.0, ge=0)
    mae_weight: float = Field(1.0, ge=0)
    exceedance_weight: float = Field(0.5, ge=0, description="weight of the soft threshold-exceedance BCE; 0 disables")
    exceedance_thresholds: list[float] = Field(default_factory=lambda: [1.0, 5.0], description="mm/h")
    exceedance_temperature: float = Field(0.05, gt=0, description="scaled units; smaller = sharper")
    exceedance_loss: Literal["bce", "soft_csi"] = Field("bce", description="bce: per-cell BCE; soft_csi: 1 - differentiable CSI over the batch (not swamped by dry cells)")
    prior_lr_multiplier: float = Field(1.0, gt=0, description="learning-rate factor of the exceedance prior's few parameters (mixture logits, indicator slopes)")
    prior_only: bool = Field(
        False,
        description="train the exceedance prior's parameters only; the ConvLSTM keeps its zero-initialised correction "
        "(needs residual_zero_init and the neighbourhood prior): an ablation measuring what the network adds to its prior",
    )
    exceedance_head_weight: float = Field(1.0, ge=0, description="weight of the BCE of the model's exceedance-probability heads (probability_thresholds)")
    exceedance_head_csi_weight: float = Field(0.0, ge=0, description="weight of 1 - a differentiable CSI of the exceedance heads' probabilities (per lead, mean over leads and thresholds), beside their BCE: aims the heads at the threshold areas the deterministic field is cut from")
    lightning_weight: float = Field(0.5, ge=0)
    lightning_pos_weight: float = Field(5.0, gt=0, description="BCE weight of lightning occurrences (rare)")
    lightning_prior: float | None = Field(
        None, gt=0, lt=1,
        description="initial probability of the lightning head (output bias set to its logit, as for rare classes in RetinaNet); "
        "None keeps the default initialisation. Rare strokes: the few optimiser steps of a CPU run cannot move the bias from 0.5",
    )
    # validation / early stopping
    cut_condition: Literal["none", "residual_guide"] = Field(
        "none",
        description="none: one probability cut per lead and threshold; residual_guide: two, for the cells where the residual guide (S-PROG) reaches the threshold and where it does not, so validation decides per lead how far the network may move the guide's areas",
    )
    class_cuts_m: list[float] = Field(
        default_factory=list,
        description="resolution classes (cell size, m) whose grids get their own probability cuts, fitted on the validation windows of grids within a factor of 2 of that size; every other grid uses the cuts pooled over all validation windows",
    )
    full_frame_cuts_m: list[float] = Field(
        default_factory=list,
        description="resolution classes (cell size, m) whose probability cuts are refitted once training ends, on the full frames of the validation windows of grids within a factor of 2 of that size "
        "(validation during training sees centre crops of val_crop_size): best.pt gets them, recorded as calibration_data (training.recalibrate --cuts-class, run by the trainer)",
    )
    csi_threshold: float = Field(1.0, gt=0, description="mm/h; early stopping on validation CSI at this threshold, pooled over leads")
    patience: int = Field(5, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(1e-4, ge=0)
    # runtime
    amp: bool = Field(True, description="bf16 autocast on CUDA (CPU always fp32)")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads of this process; None = torch's default (use 1 on a busy shared CPU)")
    progress: bool = Field(True, description="tqdm progress bar")
    init_checkpoint: str | None = Field(None, description="start from these weights (fine-tuning), same architecture")

    @model_validator(mode="after")
    def _check(self) -> TrainOptions:
        if len(self.intensity_weights) != len(self.intensity_thresholds) + 1:
            raise ValueError(
                f"intensity_weights needs {len(self.intensity_thresholds) + 1} entries (one more than intensity_thresholds), got {len(self.intensity_weights)}"
            )
        if sorted(self.intensity_thresholds) != list(self.intensity_thresholds):
            raise ValueError(f"intensity_thresholds must increase, got {self.intensity_thresholds}")
        if self.prior_only and self.init_checkpoint:
            raise ValueError("prior_only trains the prior of a zero-initialised network; it cannot start from init_checkpoint")
        return self


Period = tuple[pd.Timestamp, pd.Timestamp]


class DataConfig(BaseModel):
    """Where the windows come from (the ``[data]`` table, used by ``nowcast train``).

    Periods are ``[start, end]`` pairs of ISO times (UTC, inclusive) selecting the *last input
    frame* of each window. ``test`` periods are held out: they must not overlap train/val and
    are only recorded (for the evaluation that follows).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = Field(..., description="observation store URL or path")
    storage_options: dict[str, Any] | None = None
    train: list[tuple[str, str]] = Field(..., min_length=1)
    val: list[tuple[str, str]] = Field(..., min_length=1)
    test: list[tuple[str, str]] = Field(default_factory=list)
    synthetic_seed: int | None = Field(None, description="fill a missing store from the synthetic source (demo only)")
    synthetic_size: int = Field(128, ge=16, description="synthetic grid size (cells per side) when filling")

    @field_validator("train", "val", "test")
    @classmethod
    def _periods(cls, v: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for a, b in v:
            if pd.Timestamp(a) > pd.Timestamp(b):
                raise ValueError(f"period start {a} is after its end {b}")
        return v

    @model_validator(mode="after")
    def _no_overlap(self) -> DataConfig:
        def overlaps(p: list[tuple[str, str]], q: list[tuple[str, str]]) -> bool:
            return any(pd.Timestamp(a) <= pd.Timestamp(d) and pd.Timestamp(c) <= pd.Timestamp(b) for a, b in p for c, d in q)

        if overlaps(self.train, self.val):
            raise ValueError("train and val periods overlap")
        if self.test and (overlaps(self.train, self.test) or overlaps(self.val, self.test)):
            raise ValueError("test periods must be held out: they overlap train or val")
        return self

    def select(self, times: pd.DatetimeIndex, which: str) -> pd.DatetimeIndex:
        """The ``times`` that fall into the ``which`` ("train", "val", "test") periods."""
        keep = pd.Series(False, index=times)
        for a, b in getattr(self, which):
            keep |= (times >= pd.Timestamp(a)) & (times <= pd.Timestamp(b))
        return times[keep.values]


class EventsConfig(BaseModel):
    """Train on whole events of a catalogue (the ``[events]`` table; :mod:`training.events`).

    Every stored time of the training events gives windows; ``validation`` events (or
    ``validation_events`` per class, drawn with the config's seed) are used only for early
    stopping and for the probability cuts of the deterministic field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    catalogue: str = Field("configs/events-real.toml", description="event catalogue file")
    classes: list[str] = Field(default_factory=lambda: ["2km", "240m"], description="resolution classes used")
    validation: list[str] | None = Field(None, description="validation event names; None = drawn per class")
    validation_events: int = Field(1, ge=1, description="validation events per class when drawn")
    exclude: list[str] = Field(default_factory=list, description="events never used (e.g. held out for a test)")


class TrainConfig(BaseModel):
    """A whole training configuration file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainOptions = Field(default_factory=TrainOptions)
    data: DataConfig | None = None
    events: EventsConfig | None = None
    seed: int = 0
    out_dir: str = "runs/convlstm"

    @model_validator(mode="after")
    def _one_source(self) -> TrainConfig:
        if self.data is not None and self.events is not None:
            raise ValueError("give either [data] (one store) or [events] (a catalogue of event stores), not both")
        return self

    def options(self) -> dict[str, Any]:
        """The ``model``/``train`` tables as ``fit()`` takes them."""
        return {"model": self.model.model_dump(), "train": self.train.model_dump()}


def parse_options(options: dict[str, Any]) -> tuple[ModelConfig, TrainOptions]:
    """Validate a ``{"model": ..., "train": ...}`` dict (from ``TrainConfig.options()`` or a file)."""
    unknown = set(options) - {"model", "train"}
    if unknown:
        raise ValueError(f"unknown option tables {sorted(unknown)}; valid: model, train")
    model_cfg, opts = ModelConfig.model_validate(options.get("model", {})), TrainOptions.model_validate(options.get("train", {}))
    check_compatible(model_cfg, opts)
    return model_cfg, opts


def check_compatible(model_cfg: ModelConfig, opts: TrainOptions) -> None:
    """Raise ValueError for ``[train]`` options the ``[model]`` cannot honour (checked before any data is read)."""
    if opts.cut_condition == "residual_guide" and (not model_cfg.probability_thresholds or model_cfg.advection != "residual"):
        raise ValueError("train.cut_condition = 'residual_guide' needs exceedance heads (model.probability_thresholds) and model.advection = 'residual'")
    if opts.full_frame_cuts_m and (not model_cfg.probability_thresholds or opts.cut_condition != "none"):
        raise ValueError("train.full_frame_cuts_m needs exceedance heads (model.probability_thresholds) and unconditioned cuts (train.cut_condition = 'none')")
    if opts.prior_only:  # the forecast of a network left at initialisation must be its exceedance prior
        missing = [
            what
            for what, ok in (
                ("advection = 'residual'", model_cfg.advection == "residual"),
                ("residual_zero_init = true", model_cfg.residual_zero_init),
                ("probability_thresholds", bool(model_cfg.probability_thresholds)),
                ("prior_levels > 0", model_cfg.prior_levels > 0),
            )
            if not ok
        ]
        if missing:
            raise ValueError(f"train.prior_only needs a model with {', '.join(missing)}")


def resolve_out_dir(out_dir: str | Path) -> Path:
    p = Path(out_dir)
    p.mkdir(parents=True, exist_ok=True)
    return p
