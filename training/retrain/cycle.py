"""One retrain cycle: lock, plan the periods, check the data, train the challenger, evaluate
and decide (:mod:`training.retrain.decision`), register, promote, write the ledger."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from nowcast.model_registry import LockHeldError, ModelRegistry, _iso, now_utc
from training.retrain.config import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SKIPPED,
    RetrainConfig,
    RetrainSkipped,
    Trainer,
    resolve_trainer,
)
from training.retrain.decision import (
    Comparison,
    compare,
    decide,
    evaluate_methods,
    summarize_scores,
)
from training.retrain.periods import _model_geometry, _times_in, data_summary, plan_periods

if TYPE_CHECKING:
    from nowcast.store import ObservationStoreLike

log = logging.getLogger(__name__)


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
    comps = [compare(pooled, "baseline", blocks, ev, cfg.seed)]
    if champ is not None:
        comps.insert(0, compare(pooled, "champion", blocks, ev, cfg.seed))
    result.comparisons = comps
    promote, reason = decide(comps, ev, champ.version_id if champ is not None else None)

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


__all__ = ["RetrainResult", "run_retrain"]
