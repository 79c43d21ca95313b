"""Batch retraining: train a challenger on the most recent data, compare it with the champion,
promote it only when it is better, and write every decision to the ledger.

One run (``nowcast retrain --config FILE``, see docs/retraining.md)::

    lock <registry>/retrain.lock (else: skipped, exit 3)
    periods, from the store's last complete frame backwards:
        [ train ][embargo][ val ][embargo][ evaluation ]  -> last complete frame
    checks: enough frames in train/val, rain in the training window     (else: skipped)
    train the challenger: trainer(options, store, train_times, val_times, seed, device, out_dir)
        (``training.api.fit``; warm start from the champion's checkpoint when asked and the
        architecture matches)
    evaluate challenger, champion and baseline on the evaluation period (forecast start
        times every ``stride``; a start time whose inputs or verifying frames are missing is
        skipped and counted); contingency tables per start time, pooled over the criterion's
        leads; paired block bootstrap over start times for the score difference
    register the challenger (immutable version, status candidate, scores in its manifest)
    promote when: diff > min_improvement and (lower bound of the interval > 0 when
        ``require_interval``); else keep the champion and record why
    ledger record (decision, reason, scores, interval, periods, versions) ; unlock

Neither model was trained on the evaluation period: the challenger's periods end an embargo
before it, and a champion whose recorded training data reach into it makes the run skip.
A failure anywhere leaves the champion pointer untouched (promotion is one atomic write of
``status.json`` after the new version is complete and loadable).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nowcast import dims
from nowcast.metrics.categorical import ContingencyTable, scores_from_counts
from nowcast.model_registry import (
    LockHeldError,
    ModelRegistry,
    RegistryError,
    _iso,
    now_utc,
)

if TYPE_CHECKING:
    from nowcast.store import ObservationStoreLike

log = logging.getLogger(__name__)

#: trainer(options, store, train_times, val_times, *, seed, device, out_dir) -> checkpoint path
Trainer = Callable[..., Path]

#: exit codes of ``nowcast retrain``
EXIT_OK = 0  # a decision was made (promoted or champion kept)
EXIT_FAILED = 1  # an error: nothing promoted
EXIT_CONFIG = 2  # invalid configuration
EXIT_SKIPPED = 3  # nothing to do now (lock held, no rain, not enough data, no held-out period)


# --------------------------------------------------------------------------- configuration
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


# --------------------------------------------------------------------------- results
class RetrainSkipped(RuntimeError):
    """Nothing to do now (documented skip, exit code 3); the message says why."""


@dataclass
class Periods:
    """Time ranges of one run (inclusive; times of forecast init / last input frames)."""

    train: tuple[pd.Timestamp, pd.Timestamp]
    val: tuple[pd.Timestamp, pd.Timestamp]
    eval: tuple[pd.Timestamp, pd.Timestamp]
    embargo: pd.Timedelta
    end: pd.Timestamp

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": [_iso_naive(self.train[0]), _iso_naive(self.train[1])],
            "val": [_iso_naive(self.val[0]), _iso_naive(self.val[1])],
            "eval": [_iso_naive(self.eval[0]), _iso_naive(self.eval[1])],
            "embargo_minutes": self.embargo.total_seconds() / 60,
            "end": _iso_naive(self.end),
        }


@dataclass
class Comparison:
    """Paired comparison of two methods on the same start times."""

    candidate: str
    reference: str
    score: str
    candidate_score: float
    reference_score: float
    difference: float
    interval: tuple[float, float]
    confidence: float
    n_cases: int
    n_blocks: int


@dataclass
class RetrainResult:
    """Outcome of one run; ``decision`` is promoted | kept | skipped | failed."""

    decision: str
    reason: str
    run_id: str
    challenger: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    periods: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return {"promoted": EXIT_OK, "kept": EXIT_OK, "skipped": EXIT_SKIPPED}.get(self.decision, EXIT_FAILED)

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        d["comparisons"] = [asdict(c) for c in self.comparisons]
        return {"event": "retrain", **d}


def _iso_naive(t: pd.Timestamp) -> str:
    return pd.Timestamp(t).isoformat()


# --------------------------------------------------------------------------- periods and data
def _model_geometry(cfg: RetrainConfig, cadence: pd.Timedelta) -> tuple[int, int]:
    """(input frames, output steps) of the challenger's windows."""
    n_in, n_out = int(cfg.model.get("n_inputs", 5)), int(cfg.model.get("n_leads", 15))
    if cfg.nowcaster == "convlstm":
        try:
            from nowcast.models.network import ModelConfig

            mc = ModelConfig.model_validate(cfg.model)
            n_in, n_out = int(getattr(mc, "frames_needed", mc.n_inputs)), mc.n_leads
        except Exception:  # validated earlier; keep defaults if the schema moved
            pass
    eval_steps = int(np.ceil(pd.Timedelta(minutes=cfg.evaluation.lead_max_minutes) / cadence))
    return n_in, max(n_out, eval_steps)


def plan_periods(cfg: RetrainConfig, last: pd.Timestamp, cadence: pd.Timedelta, n_in: int, n_out: int) -> Periods:
    """Train / val / evaluation periods ending at ``last`` (see the module docstring).

    Evaluation start times need ``n_out`` verifying frames after them, so the last one is
    ``end - lead_max``. Periods are separated by an embargo of at least ``(n_in + n_out)``
    cadences: no training or validation window overlaps an evaluation window.
    """
    w = cfg.window
    end = pd.Timestamp(w.end) if w.end else pd.Timestamp(last)
    end = end.floor(cadence)
    embargo = pd.Timedelta(minutes=w.embargo_minutes) if w.embargo_minutes is not None else (n_in + n_out) * cadence
    lead_max = pd.Timedelta(minutes=cfg.evaluation.lead_max_minutes)
    eval_end = (end - lead_max).floor(cadence)
    eval_start = (end - pd.Timedelta(hours=w.eval_hours)).ceil(cadence) + (n_in - 1) * cadence
    if eval_start > eval_end:
        raise RetrainSkipped(f"evaluation period of {w.eval_hours} h is too short for {n_in} inputs and leads up to {lead_max}")
    val_end = (eval_start - embargo).floor(cadence)
    val_start = (val_end - pd.Timedelta(hours=w.val_hours)).ceil(cadence) + cadence
    train_end = (val_start - embargo).floor(cadence)
    train_start = (train_end - pd.Timedelta(hours=w.train_hours)).ceil(cadence) + cadence
    return Periods((train_start, train_end), (val_start, val_end), (eval_start, eval_end), embargo, end)


def _times_in(times: pd.DatetimeIndex, period: tuple[pd.Timestamp, pd.Timestamp]) -> pd.DatetimeIndex:
    return times[(times >= period[0]) & (times <= period[1])]


def data_summary(store: ObservationStoreLike, times: pd.DatetimeIndex, wet_threshold: float, batch: int = 48) -> dict[str, Any]:
    """Wet fraction over ``times`` (covered cells >= wet_threshold) and a fingerprint of the frames.

    The fingerprint is the sha256 of the store URL, the frame times and each frame's bytes
    (rain rate float32), so two versions trained on different frames always differ.
    """
    h = hashlib.sha256(str(store.url).encode())
    wet = covered = 0
    for i in range(0, len(times), batch):
        part = times[i : i + batch]
        ds = store.read_times(part)
        rain = np.asarray(ds[dims.RAIN_RATE].values, dtype=np.float32)
        cov = np.isfinite(rain)
        covered += int(cov.sum())
        wet += int(np.count_nonzero(rain[cov] >= wet_threshold))
        for t, frame in zip(part, rain, strict=True):
            h.update(str(pd.Timestamp(t)).encode())
            h.update(np.ascontiguousarray(frame).tobytes())
    return {
        "n_frames": len(times),
        "first": _iso_naive(times[0]) if len(times) else None,
        "last": _iso_naive(times[-1]) if len(times) else None,
        "wet_fraction": wet / covered if covered else 0.0,
        "sha256": h.hexdigest(),
    }


# --------------------------------------------------------------------------- evaluation
@dataclass
class CaseTables:
    """Per-start-time contingency counts (n_cases, n_leads, 4: hits, misses, false alarms,
    correct negatives) of one method at one threshold."""

    counts: list[np.ndarray] = field(default_factory=list)

    def add(self, table: ContingencyTable) -> None:
        self.counts.append(
            np.stack([table.hits[:, 0], table.misses[:, 0], table.false_alarms[:, 0], table.correct_negatives[:, 0]], axis=-1)
        )

    def array(self) -> np.ndarray:
        return np.asarray(self.counts, dtype=np.int64)


def score_of(counts: np.ndarray, score: str) -> np.ndarray:
    """``score`` from counts (..., 4); NaN where undefined."""
    return scores_from_counts(counts[..., 0], counts[..., 1], counts[..., 2], counts[..., 3])[score]


def block_bootstrap(
    cand: np.ndarray, ref: np.ndarray, blocks: np.ndarray, score: str, n: int, confidence: float, seed: int
) -> tuple[float, tuple[float, float]]:
    """Paired block bootstrap of ``score(cand) - score(ref)`` from pooled counts.

    cand, ref: (n_cases, 4) int64 counts per start time (leads pooled); blocks: (n_cases,)
    block id per case. Blocks of consecutive start times are resampled with replacement (the
    same draw for both methods), counts pooled, the score computed from the pooled tables.
    Returns the point difference and the percentile interval.
    """
    point = float(score_of(cand.sum(0), score) - score_of(ref.sum(0), score))
    ids = np.unique(blocks)
    cb = np.stack([cand[blocks == b].sum(0) for b in ids])
    rb = np.stack([ref[blocks == b].sum(0) for b in ids])
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(ids), size=(n, len(ids)))
    diffs = score_of(cb[draw].sum(1), score) - score_of(rb[draw].sum(1), score)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return point, (float("nan"), float("nan"))
    a = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [a, 1 - a])
    return point, (float(lo), float(hi))


def evaluate_methods(
    methods: dict[str, Any],
    store: ObservationStoreLike,
    period: tuple[pd.Timestamp, pd.Timestamp],
    ev: EvaluationConfig,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], pd.DatetimeIndex, dict[str, int]]:
    """Forecast every ``stride`` in ``period`` with each method and tabulate against observations.

    Returns per-method counts (n_cases, n_leads, 4) at ``ev.threshold`` for leads
    ``lead_min..lead_max`` (every cadence), the used start times, and skip counts. A start
    time is skipped (documented) when any input frame of any method or any verifying frame is
    missing; a method that raises on a case fails the whole evaluation (no silent drops).
    """
    cadence = store.cadence
    stride = pd.Timedelta(minutes=ev.stride_minutes)
    all_leads = [cadence * k for k in range(1, int(pd.Timedelta(minutes=ev.lead_max_minutes) / cadence) + 1)]
    keep = np.array([lead >= pd.Timedelta(minutes=ev.lead_min_minutes) for lead in all_leads])
    n_in = max(int(getattr(m, "n_inputs", 1)) for m in methods.values())
    starts = pd.date_range(period[0], period[1], freq=stride)
    stored = set(store.times())
    tables = {name: CaseTables() for name in methods}
    used: list[pd.Timestamp] = []
    skipped = {"missing_inputs": 0, "missing_observations": 0}
    iterator: Any = starts
    if progress:
        from tqdm import tqdm

        iterator = tqdm(starts, desc="evaluate", unit="start", leave=False)
    for t in iterator:
        inputs = pd.date_range(end=t, periods=n_in, freq=cadence)
        if any(x not in stored for x in inputs):
            skipped["missing_inputs"] += 1
            continue
        valid = [t + lead for lead in all_leads]
        if any(v not in stored for k, v in enumerate(valid) if keep[k]):
            skipped["missing_observations"] += 1
            continue
        history = store.window(t, n_in)
        obs = store.read_times([v for k, v in enumerate(valid) if keep[k]])
        o = np.asarray(obs[dims.RAIN_RATE].values)
        for name, model in methods.items():
            hist = history.isel({dims.TIME: slice(n_in - int(getattr(model, "n_inputs", 1)), None)})
            fc = model.forecast(hist, all_leads)
            f = np.asarray(fc[dims.RAIN_RATE].values)[keep]
            table = ContingencyTable.init([ev.threshold], int(keep.sum()))
            table.accumulate(f, o)
            tables[name].add(table)
        used.append(t)
    return {k: v.array() for k, v in tables.items()}, pd.DatetimeIndex(used), skipped


def summarize_scores(counts: np.ndarray, score: str, leads: list[int]) -> dict[str, Any]:
    """Pooled score, per-lead scores and pooled counts of one method."""
    pooled = counts.sum(axis=(0, 1))
    per_lead = score_of(counts.sum(0), score)
    return {
        score: _num(score_of(pooled, score)),
        "per_lead": {str(m): _num(v) for m, v in zip(leads, per_lead, strict=True)},
        "counts": {k: int(v) for k, v in zip(("hits", "misses", "false_alarms", "correct_negatives"), pooled, strict=True)},
    }


def _num(x: Any) -> float | None:
    v = float(x)
    return v if np.isfinite(v) else None


# --------------------------------------------------------------------------- the job
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


def _write_ledger(cfg: RetrainConfig, reg: ModelRegistry | None, record: dict[str, Any]) -> None:
    record = {**record, "recorded_at": _iso(now_utc())}
    try:
        from training.dap.ledger import Ledger  # the DAP ledger writer (append, fsync)

        if cfg.ledger:
            Ledger(cfg.ledger).append(record)
        elif reg is not None and reg.local_path is not None:
            Ledger(reg.local_path / "ledger.jsonl").append(record)
        elif reg is not None:
            reg.append_ledger(record)  # object storage: read + rewrite under the retrain lock
        else:
            log.warning("no ledger to write to (registry unavailable): %s", json.dumps(record, default=str)[:500])
    except Exception as exc:  # the decision itself is already applied (or not); say so loudly
        log.error("could not write the ledger record: %s", exc)


def _champion_overlap(champ_manifest: dict[str, Any], eval_first_input: pd.Timestamp) -> str | None:
    """Why the champion's training data reach into the evaluation period, or None."""
    data = champ_manifest.get("data") or {}
    horizon = pd.Timedelta(minutes=float(data.get("horizon_minutes", 0) or 0))
    for name in ("train", "val"):
        rng = (data.get("periods") or {}).get(name)
        if rng and pd.Timestamp(rng[1]) + horizon >= eval_first_input:
            return f"the champion's {name} period ends {rng[1]} (+{horizon} of targets), inside the evaluation period starting {eval_first_input}"
    return None


def run_retrain(cfg: RetrainConfig, *, trainer: Trainer | None = None, progress: bool = False) -> RetrainResult:
    """One retrain cycle (see the module docstring); never raises for expected outcomes.

    Returns the result (its ``exit_code`` is the command's). Unexpected errors are recorded as
    ``failed`` in the ledger when possible and re-raised.
    """
    from nowcast.store import ObservationStore, StoreError

    run_id = f"{now_utc().strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    reg = ModelRegistry(cfg.registry, cfg.registry_options, create=cfg.create_registry)
    reg.check_writable()
    lock = reg.lock("retrain.lock", pd.Timedelta(minutes=cfg.schedule.lock_ttl_minutes), owner=f"retrain {run_id}")
    try:
        lock.acquire()
    except LockHeldError as exc:
        log.warning("skipped: %s", exc)
        return RetrainResult("skipped", str(exc), run_id)
    result = RetrainResult("failed", "", run_id)
    try:
        try:
            champ = reg.champion()
            result.champion_before = champ.version_id if champ else None
            store = ObservationStore.open(cfg.store, mode="r", storage_options=_opts(cfg.store, cfg.store_options))
            result = _cycle(cfg, reg, store, champ, trainer, lock, progress, result, seconds)
        except RetrainSkipped as exc:
            result.decision, result.reason = "skipped", str(exc)
            log.warning("skipped: %s", exc)
        except StoreError as exc:
            result.decision, result.reason = "failed", f"observation store: {exc}"
            log.error("%s", result.reason)
        except Exception as exc:
            result.decision, result.reason = "failed", f"{type(exc).__name__}: {exc}"
            result.seconds = {**seconds, "total": time.perf_counter() - t_start}
            result.champion_after = reg.status().champion
            _write_ledger(cfg, reg, {**result.record(), "config_hash": cfg.hash()})
            raise
        result.seconds = {**seconds, "total": time.perf_counter() - t_start}
        result.champion_after = reg.status().champion
        _write_ledger(cfg, reg, {**result.record(), "config_hash": cfg.hash()})
        log.info("retrain %s: %s (%s)", run_id, result.decision, result.reason)
        return result
    finally:
        lock.release()


def _opts(url: str, options: dict[str, Any] | None) -> dict[str, Any] | None:
    try:
        from nowcast.storage import storage_options

        return storage_options(url, options)
    except ImportError:  # pragma: no cover
        return options


def _cycle(
    cfg: RetrainConfig,
    reg: ModelRegistry,
    store: ObservationStoreLike,
    champ: Any,
    trainer: Trainer | None,
    lock: Any,
    progress: bool,
    result: RetrainResult,
    seconds: dict[str, float],
) -> RetrainResult:
    from nowcast.models.base import create_nowcaster

    ev = cfg.evaluation
    last = store.last_complete()
    if last is None:
        raise RetrainSkipped(f"{cfg.store}: the observation store is empty")
    cadence = store.cadence
    n_in, n_out = _model_geometry(cfg, cadence)
    periods = plan_periods(cfg, last, cadence, n_in, n_out)
    result.periods = periods.to_dict()
    log.info("periods: %s", json.dumps(result.periods))
    times = store.times()
    train_times = _times_in(times, periods.train)
    val_times = _times_in(times, periods.val)
    expected_train = int((periods.train[1] - periods.train[0]) / cadence) + 1
    if len(train_times) < cfg.window.min_train_fraction * expected_train or len(train_times) == 0:
        raise RetrainSkipped(
            f"training period {periods.train[0]} .. {periods.train[1]} holds {len(train_times)} of {expected_train} "
            f"frames (< {cfg.window.min_train_fraction:.0%})"
        )
    if len(val_times) == 0:
        raise RetrainSkipped(f"validation period {periods.val[0]} .. {periods.val[1]} holds no frames")

    # -- held-out check for the champion
    eval_first_input = periods.eval[0] - (n_in - 1) * cadence
    if champ is not None:
        why = _champion_overlap(champ.manifest, eval_first_input)
        if why:
            raise RetrainSkipped(f"no evaluation period held out from both models: {why}; wait for newer data")

    # -- data checks and fingerprint
    t0 = time.perf_counter()
    train_summary = data_summary(store, train_times, cfg.window.wet_threshold)
    seconds["data_check"] = time.perf_counter() - t0
    if train_summary["wet_fraction"] < cfg.window.min_wet_fraction:
        raise RetrainSkipped(
            f"training window {periods.train[0]} .. {periods.train[1]} has no rain to learn from "
            f"(wet fraction {train_summary['wet_fraction']:.2e} < min_wet_fraction {cfg.window.min_wet_fraction:g})"
        )

    # -- train the challenger
    options = cfg.options()
    parent = None
    if cfg.warm_start and champ is not None:
        champ_cfg = reg.read_config(champ.version_id)
        if champ.model == cfg.nowcaster and (champ_cfg.get("model") or {}) == options["model"]:
            options["train"] = {**options["train"], "init_checkpoint": str(reg.checkpoint_path(champ.version_id))}
            parent = champ.version_id
            log.info("warm start from champion %s", parent)
        else:
            log.info("no warm start: the champion's architecture/model differs from the configured one")
    out_dir = Path(cfg.work_dir) / result.run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    fit = trainer or resolve_trainer(cfg.trainer)
    log.info("training challenger on %d frames (%s .. %s), validating on %d", len(train_times), *periods.train, len(val_times))
    t0 = time.perf_counter()
    checkpoint = Path(fit(options, store, train_times, val_times, seed=cfg.seed, device=cfg.device, out_dir=out_dir))
    seconds["train"] = time.perf_counter() - t0
    lock.refresh()
    challenger_model = create_nowcaster(cfg.nowcaster, **{**cfg.nowcaster_options, "checkpoint": checkpoint})

    # -- evaluate challenger, champion, baseline on the held-out period
    methods: dict[str, Any] = {"challenger": challenger_model}
    if champ is not None:
        methods["champion"] = reg.load(champ.version_id, **cfg.nowcaster_options) if champ.model == cfg.nowcaster else reg.load(champ.version_id)
    methods["baseline"] = create_nowcaster(ev.baseline)
    t0 = time.perf_counter()
    counts, used, skipped = evaluate_methods(methods, store, periods.eval, ev, progress)
    seconds["evaluate"] = time.perf_counter() - t0
    lead_minutes = [int(m) for m in range(ev.lead_min_minutes, ev.lead_max_minutes + 1, int(cadence.total_seconds() // 60))]
    lead_minutes = lead_minutes[: counts["challenger"].shape[1]] if len(used) else lead_minutes
    result.scores = {
        "criterion": f"{ev.score} >= {ev.threshold:g} mm/h pooled over leads {ev.lead_min_minutes}-{ev.lead_max_minutes} min",
        "n_cases": len(used),
        "skipped_cases": skipped,
    }
    if len(used) < ev.min_cases:
        raise RetrainSkipped(
            f"evaluation period {periods.eval[0]} .. {periods.eval[1]}: only {len(used)} usable forecast start times "
            f"(< min_cases {ev.min_cases}; skipped {skipped['missing_inputs']} for missing inputs, "
            f"{skipped['missing_observations']} for missing observations)"
        )
    for name, c in counts.items():
        result.scores[name] = summarize_scores(c, ev.score, lead_minutes)
    blocks = ((used - used[0]) // pd.Timedelta(minutes=ev.block_minutes)).to_numpy()
    pooled = {k: v.sum(1) for k, v in counts.items()}

    def compare(ref: str) -> Comparison:
        point, ci = block_bootstrap(pooled["challenger"], pooled[ref], blocks, ev.score, ev.bootstrap, ev.confidence, cfg.seed)
        return Comparison(
            "challenger", ref, ev.score,
            float(score_of(pooled["challenger"].sum(0), ev.score)), float(score_of(pooled[ref].sum(0), ev.score)),
            point, ci, ev.confidence, len(used), len(np.unique(blocks)),
        )

    comps = [compare("baseline")]
    if champ is not None:
        comps.insert(0, compare("champion"))
    result.comparisons = comps

    # -- decide
    decisive: Comparison | None
    if champ is not None:
        decisive = comps[0]
    elif ev.first_champion == "beat_baseline":
        decisive = comps[0]
    else:
        decisive = None
    if decisive is None:
        promote, reason = True, "no champion yet (first_champion = always)"
    else:
        lo = decisive.interval[0]
        ref_label = f"{decisive.reference}" + (f" {champ.version_id}" if decisive.reference == "champion" else "")
        desc = (
            f"{ev.score} {decisive.candidate_score:.4f} vs {ref_label} {decisive.reference_score:.4f}: "
            f"difference {decisive.difference:+.4f}, {ev.confidence:.0%} interval [{lo:+.4f}, {decisive.interval[1]:+.4f}]"
        )
        if not np.isfinite(decisive.difference):
            promote, reason = False, f"score undefined (no events at {ev.threshold:g} mm/h in the evaluation period?): {desc}"
        elif decisive.difference <= ev.min_improvement:
            promote, reason = False, f"not better than the {decisive.reference}: {desc}"
        elif ev.require_interval and not (np.isfinite(lo) and lo > 0):
            promote, reason = False, f"improvement not significant (interval includes a loss): {desc}"
        else:
            promote, reason = True, f"beats the {decisive.reference}: {desc}"

    # -- register (immutable version) and promote atomically
    version = reg.register(
        checkpoint,
        model=cfg.nowcaster,
        model_options=dict(cfg.nowcaster_options),
        config={**options, "retrain_config": json.loads(cfg.model_dump_json()), "run_id": result.run_id},
        data={
            "store": str(cfg.store),
            "store_version": store.version,
            "periods": {"train": result.periods["train"], "val": result.periods["val"]},
            "horizon_minutes": n_out * cadence.total_seconds() / 60,
            "train_frames": train_summary,
            "val_frames": {"n_frames": len(val_times)},
        },
        training=_training_metrics(checkpoint),
        evaluation={
            "period": result.periods["eval"],
            "criterion": result.scores["criterion"],
            "score": {"name": ev.score, "value": result.scores["challenger"][ev.score]},
            "scores": {k: result.scores[k] for k in counts},
            "comparisons": [asdict(c) for c in comps],
            "decision": "promoted" if promote else "kept",
            "reason": reason,
        },
        parent=parent,
    )
    result.challenger = version.version_id
    if promote:
        reg.promote(version.version_id, reason=f"retrain {result.run_id}: {reason}")
        result.decision, result.reason = "promoted", reason
    else:
        result.decision, result.reason = "kept", reason
    return result


def _training_metrics(checkpoint: Path) -> dict[str, Any]:
    """Training metrics stored beside or inside the checkpoint, when the trainer wrote them."""
    for name in ("metrics.json", "train_metrics.json"):
        p = checkpoint.parent / name
        if p.is_file():
            try:
                return json.loads(p.read_text())
            except ValueError:
                pass
    if checkpoint.suffix not in (".pt", ".pth", ".ckpt"):
        return {}
    try:
        import torch

        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if isinstance(ck, dict):
            m = ck.get("metrics") or ck.get("best_metrics") or {}
            return json.loads(json.dumps(m, default=float))
    except Exception:
        pass
    return {}


__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "RegistryError",
    "RetrainConfig",
    "RetrainResult",
    "RetrainSkipped",
    "block_bootstrap",
    "evaluate_methods",
    "load_retrain_config",
    "plan_periods",
    "run_retrain",
]
