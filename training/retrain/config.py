"""Retrain configuration: the ``nowcast retrain`` schema (``[window]``, ``[schedule]``,
``[evaluation]``, ``[model]``, ``[train]``), its loader, the exit codes and the trainer hook."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: trainer(options, store, train_times, val_times, *, seed, device, out_dir) -> checkpoint path
Trainer = Callable[..., Path]

#: exit codes of ``nowcast retrain``
EXIT_OK = 0  # a decision was made (promoted or champion kept)
EXIT_FAILED = 1  # an error: nothing promoted
EXIT_CONFIG = 2  # invalid configuration
EXIT_SKIPPED = 3  # nothing to do now (lock held, no rain, not enough data, no held-out period)


class RetrainSkipped(RuntimeError):
    """Nothing to do now (documented skip, exit code 3); the message says why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowConfig(_Strict):
    """Which frames train, validate and evaluate (the ``[window]`` table); hours are counted
    back from ``end`` (default: the store's last complete frame)."""

    train_hours: float = Field(48.0, gt=0, description="training period (last input frames of the windows)")
    val_hours: float = Field(6.0, gt=0, description="validation period (early stopping), after the training period")
    eval_hours: float = Field(12.0, gt=0, description="held-out evaluation period, the most recent one")
    end: str | None = Field(None, description="ISO time of the last frame to use; default: the store's last complete frame")
    embargo_minutes: int | None = Field(
        None, ge=0, description="gap between periods; default (n_inputs + n_leads) * cadence so no windows overlap"
    )
    min_train_fraction: float = Field(0.5, ge=0, le=1, description="minimum fraction of present frames in the training period")
    min_wet_fraction: float = Field(0.002, ge=0, le=1, description="minimum fraction of covered cells >= wet_threshold over the training frames")
    wet_threshold: float = Field(0.1, gt=0, description="mm/h; a cell at or above is wet")


class ScheduleConfig(_Strict):
    """When the job runs (the ``[schedule]`` table): read by cron/Kubernetes docs, and the lock."""

    cron: str = Field("0 3 * * *", description="cron expression for the deployment (informational; the command runs once)")
    lock_ttl_minutes: float = Field(360.0, gt=0, description="expiry of retrain.lock; a crashed job's lock is stale after it")


class EvaluationConfig(_Strict):
    """The promotion criterion (the ``[evaluation]`` table)."""

    score: Literal["csi", "ets", "hss", "pod", "mcc"] = Field("csi", description="categorical score (higher is better)")
    threshold: float = Field(1.0, gt=0, description="mm/h event threshold")
    lead_min_minutes: int = Field(30, gt=0, description="first lead pooled into the criterion")
    lead_max_minutes: int = Field(60, gt=0, description="last lead pooled into the criterion")
    stride_minutes: int = Field(10, gt=0, description="interval between evaluated forecast start times")
    block_minutes: int = Field(60, gt=0, description="bootstrap block length (consecutive start times resampled together)")
    bootstrap: int = Field(1000, ge=100, description="bootstrap resamples")
    confidence: float = Field(0.9, gt=0.5, lt=1, description="two-sided interval level")
    min_improvement: float = Field(0.0, ge=0, description="the score difference must exceed this")
    require_interval: bool = Field(True, description="also require the interval's lower bound > 0 (no plausible loss)")
    baseline: str = Field("extrapolation", description="registered nowcaster evaluated alongside (reference)")
    min_cases: int = Field(6, ge=1, description="minimum usable forecast start times; fewer: skip")
    first_champion: Literal["beat_baseline", "always"] = Field(
        "beat_baseline", description="with no champion yet: promote only if the challenger beats the baseline, or always"
    )

    @model_validator(mode="after")
    def _leads(self) -> EvaluationConfig:
        if self.lead_max_minutes < self.lead_min_minutes:
            raise ValueError(f"lead_max_minutes {self.lead_max_minutes} < lead_min_minutes {self.lead_min_minutes}")
        return self


class RetrainConfig(_Strict):
    """A whole ``nowcast retrain`` configuration (see docs/retraining.md and configs/retrain.toml)."""

    store: str = Field(..., description="observation store path or s3:// URL")
    store_options: dict[str, Any] | None = None
    registry: str = Field(..., description="model registry path or s3:// URL")
    registry_options: dict[str, Any] | None = None
    create_registry: bool = Field(False, description="create the registry when missing (else: error)")
    nowcaster: str = Field("convlstm", description="registered nowcaster that loads the trained checkpoint")
    nowcaster_options: dict[str, Any] = Field(default_factory=dict, description="extra load options (e.g. device)")
    trainer: str | None = Field(
        None, description="'module:function' with the signature of training.api.fit; default training.api.fit"
    )
    warm_start: bool = Field(True, description="start from the champion's weights when its architecture matches")
    seed: int = 0
    device: str = "auto"
    work_dir: str = Field("var/retrain", description="local scratch for the challenger's training run")
    ledger: str | None = Field(None, description="local JSON-lines ledger (DAP format); default <registry>/ledger.jsonl")
    window: WindowConfig = Field(default_factory=WindowConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    model: dict[str, Any] = Field(default_factory=dict, description="[model] table handed to the trainer")
    train: dict[str, Any] = Field(default_factory=dict, description="[train] table handed to the trainer")

    def options(self) -> dict[str, Any]:
        return {"model": dict(self.model), "train": dict(self.train)}

    def hash(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def load_retrain_config(path: str | Path | None, overrides: list[str] | None = None) -> RetrainConfig:
    """Read, override (``a.b=v``) and validate a retrain configuration; ConfigError lists problems.

    For the ``convlstm`` nowcaster the ``[model]``/``[train]`` tables are validated with the
    training schema too, so a typo fails before any work starts.
    """
    from nowcast.config import ConfigError, load_config

    cfg = load_config(RetrainConfig, path, overrides)
    if cfg.nowcaster == "convlstm":
        try:
            from training.config import parse_options

            parse_options(cfg.options())
        except ImportError:  # pragma: no cover - training package incomplete
            pass
        except ValueError as exc:
            raise ConfigError(f"{path}: invalid [model]/[train] table: {exc}") from exc
    if cfg.trainer:
        try:
            resolve_trainer(cfg.trainer)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return cfg


def default_trainer() -> Trainer:
    """``training.api.fit`` (imported when needed: torch is heavy)."""
    from training.api import fit

    return fit


def resolve_trainer(spec: str | None) -> Trainer:
    """The trainer named ``module:function`` (default ``training.api.fit``)."""
    if not spec:
        return default_trainer()
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"trainer {spec!r} must look like 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"trainer {spec!r} cannot be imported: {exc}") from exc
    if not callable(fn):
        raise ValueError(f"trainer {spec!r} is not callable")
    return fn


__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "EvaluationConfig",
    "RetrainConfig",
    "RetrainSkipped",
    "ScheduleConfig",
    "Trainer",
    "WindowConfig",
    "default_trainer",
    "load_retrain_config",
    "resolve_trainer",
]
