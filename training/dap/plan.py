"""The evaluation plan: a pydantic schema, loading from TOML/YAML, the canonical hash.

A plan names the data (store and period), the methods to compare (any registered
nowcaster; several configurations of one model under different labels), the scores
(thresholds in mm/h, lightning occurrence, leads, FSS scales), the split scheme and the
seed. It is validated before any work; :func:`plan_hash` is the SHA-256 of the canonical
JSON of the validated plan and is stamped on every output.

Structural checks live here (types, ranges, unknown methods); checks that need the data
(enough blocks for the folds, the period present in the store) live in
:mod:`training.dap.splits` and :func:`training.dap.runner.prepare` and also run before any work.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nowcast.config import load_config

DEFAULT_THRESHOLDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
DEFAULT_LEADS_MIN = tuple(range(5, 80, 5))
#: accepted range of rain-rate thresholds, mm/h
THRESHOLD_RANGE = (0.01, 300.0)
#: accepted range of lead times, minutes
LEAD_RANGE_MIN = (1, 360)


class PlanError(ValueError):
    """A plan that cannot run (bad value, or not satisfiable by the data); says what to change."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _duration(v: Any, what: str) -> str:
    """Normalise a duration ("30min", "1 day", 3600 seconds) to a canonical string."""
    try:
        td = pd.Timedelta(v, unit="s") if isinstance(v, int | float) else pd.Timedelta(str(v))
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{what}: cannot read {v!r} as a duration (e.g. '30min', '2h', '1D')"
        ) from exc
    if td <= pd.Timedelta(0):
        raise ValueError(f"{what} must be positive, got {v!r}")
    return td.isoformat()


class DataSpec(_Strict):
    """Where the observations come from: one store and an optional period and crop."""

    store: str = Field(description="observation store URL or path (e.g. var/real.zarr)")
    start: str | None = Field(
        None, description="first time used (UTC, ISO 8601); default: store start"
    )
    end: str | None = Field(None, description="last time used (UTC, ISO 8601); default: store end")
    rows: tuple[int, int] | None = Field(None, description="crop: [first, stop) grid rows")
    cols: tuple[int, int] | None = Field(None, description="crop: [first, stop) grid columns")
    storage_options: dict[str, Any] | None = None

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            ts = pd.Timestamp(v)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"cannot read {v!r} as a UTC time (use e.g. 2010-08-26T00:00)"
            ) from exc
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return ts.isoformat()

    @field_validator("rows", "cols")
    @classmethod
    def _crop(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not (0 <= v[0] < v[1]):
            raise ValueError(f"crop {list(v)} must be [first, stop) with 0 <= first < stop")
        return v

    @model_validator(mode="after")
    def _period(self) -> DataSpec:
        if self.start and self.end and pd.Timestamp(self.end) <= pd.Timestamp(self.start):
            raise ValueError(f"data.end {self.end} must be after data.start {self.start}")
        return self


class MethodSpec(_Strict):
    """One method to compare: a registered nowcaster with options, under a unique label."""

    label: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.+-]+$")
    model: str = Field(description="registry name of the nowcaster (nowcast models list)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="create_nowcaster(model, **options)"
    )
    train: bool = Field(
        False, description="train on each split's training blocks (training.api.fit)"
    )
    fit: dict[str, Any] = Field(
        default_factory=dict, description="options for training.api.fit ([model]/[train] tables)"
    )

    @field_validator("model")
    @classmethod
    def _known(cls, v: str) -> str:
        from nowcast.models import MODELS

        if v not in MODELS:
            raise ValueError(f"unknown method model {v!r}; registered: {', '.join(MODELS.names())}")
        return v

    @model_validator(mode="after")
    def _fit(self) -> MethodSpec:
        if self.fit and not self.train:
            raise ValueError(f"method {self.label!r}: 'fit' options given but train = false")
        return self


class ScoreSpec(_Strict):
    """What is scored: thresholds (mm/h), lead times (min), FSS scales, lightning."""

    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    leads: tuple[int, ...] = Field(DEFAULT_LEADS_MIN, description="lead times in minutes")
    fss_thresholds: tuple[float, ...] = (1.0, 5.0)
    fss_scales: tuple[int, ...] = Field(
        (1, 5, 11, 21), description="FSS window sizes in grid cells"
    )
    lightning: bool = True
    lightning_occurrence: float = Field(
        1.0, gt=0, description="observed flashes per cell per interval"
    )
    lightning_probability: float = Field(
        0.5, gt=0, lt=1, description="probability for yes/no scores"
    )
    reliability_bins: int = Field(10, ge=2, le=100)
    interval: float = Field(
        0.95, gt=0.5, lt=1.0, description="confidence of the intervals across splits"
    )

    @field_validator("thresholds", "fss_thresholds")
    @classmethod
    def _thresholds(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        lo, hi = THRESHOLD_RANGE
        if not v:
            raise ValueError("at least one threshold is needed")
        bad = [t for t in v if not lo <= t <= hi]
        if bad:
            raise ValueError(
                f"thresholds {bad} out of range: rain-rate thresholds must lie in [{lo}, {hi}] mm/h"
            )
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate thresholds in {list(v)}")
        return tuple(sorted(float(t) for t in v))

    @field_validator("leads")
    @classmethod
    def _leads(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        lo, hi = LEAD_RANGE_MIN
        if not v:
            raise ValueError("at least one lead time is needed")
        bad = [t for t in v if not lo <= t <= hi]
        if bad:
            raise ValueError(f"lead times {bad} min out of range [{lo}, {hi}] min")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate lead times in {list(v)}")
        return tuple(sorted(v))

    @field_validator("fss_scales")
    @classmethod
    def _scales(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(s < 1 or s > 1001 for s in v):
            raise ValueError(f"FSS scales {list(v)} must be 1..1001 grid cells")
        return tuple(sorted(set(v)))


class SplitSpec(_Strict):
    """Repeated blocked temporal splits: blocks, K folds x R repetitions, embargo."""

    block: Literal["gap", "day", "fixed"] = Field(
        "gap",
        description="gap: runs separated by gaps > 'gap'; day: calendar days (UTC); fixed: 'length'",
    )
    gap: str = Field(
        "30min", description="for block = gap: a gap longer than this starts a new block"
    )
    length: str = Field("6h", description="for block = fixed: block length")
    folds: int = Field(2, ge=2, le=100)
    repetitions: int = Field(1, ge=1, le=100)
    embargo: str | None = Field(
        None, description="at least the input + output window (the default)"
    )
    validation_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="share of training blocks for early stopping"
    )
    stride: int = Field(
        1, ge=1, description="evaluate every stride-th valid start time (1 = every one)"
    )

    @field_validator("gap", "length")
    @classmethod
    def _dur(cls, v: Any) -> str:
        return _duration(v, "duration")

    @field_validator("embargo")
    @classmethod
    def _emb(cls, v: Any) -> str | None:
        return None if v is None else _duration(v, "embargo")


class RunSpec(_Strict):
    """How the evaluation runs; none of this changes the numbers."""

    workers: int = Field(0, ge=0, le=64, description="dask LocalCluster workers; 0 = in-process")
    threads_per_worker: int = Field(1, ge=1, le=64)
    device: str = Field("cpu", description="torch device for learned methods: cpu, cuda, auto")
    examples: int = Field(1, ge=0, le=10, description="example forecast panels in the report")


class Plan(_Strict):
    """A DAP evaluation plan (see docs/evaluation.md)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data: DataSpec
    methods: tuple[MethodSpec, ...] = Field(min_length=1)
    baseline: str | None = Field(
        None, description="label of the reference method (default: the first)"
    )
    scores: ScoreSpec = ScoreSpec()
    splits: SplitSpec = SplitSpec()
    seed: int = Field(0, ge=0, description="master seed: block assignment, training, per split")
    run: RunSpec = Field(RunSpec(), description="execution settings (not part of the plan hash)")

    @model_validator(mode="after")
    def _labels(self) -> Plan:
        labels = [m.label for m in self.methods]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"method labels must be unique; repeated: {dup}")
        if self.baseline is not None and self.baseline not in labels:
            raise ValueError(f"baseline {self.baseline!r} is not a method label; labels: {labels}")
        return self

    @property
    def baseline_label(self) -> str:
        return self.baseline or self.methods[0].label

    @property
    def lead_timedeltas(self) -> list[pd.Timedelta]:
        return [pd.Timedelta(minutes=m) for m in self.scores.leads]

    def hash(self) -> str:
        return plan_hash(self)


def canonical_json(plan: Plan) -> str:
    """The plan as canonical JSON (sorted keys, no spaces), without execution settings."""
    data = plan.model_dump(mode="json", exclude={"run"})
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def plan_hash(plan: Plan) -> str:
    """SHA-256 hex digest of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(plan).encode()).hexdigest()


def load_plan(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    data: dict[str, Any] | None = None,
) -> Plan:
    """Read and validate a plan (TOML/YAML/JSON file or a dict); raises PlanError naming the problem."""
    from nowcast.config import ConfigError

    try:
        if data is not None:
            from nowcast.config import apply_overrides

            return Plan.model_validate(apply_overrides(json.loads(json.dumps(data)), overrides))
        return load_config(Plan, path, overrides)
    except ConfigError as exc:
        raise PlanError(str(exc)) from exc
    except ValueError as exc:  # pydantic ValidationError from a dict
        raise PlanError(f"invalid plan: {exc}") from exc
