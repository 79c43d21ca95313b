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

Modules: :mod:`~training.retrain.config` (schema, loader, exit codes, trainer hook),
:mod:`~training.retrain.periods` (periods and data checks), :mod:`~training.retrain.decision`
(held-out evaluation through :mod:`nowcast.evaluation`, bootstrap, promotion rule),
:mod:`~training.retrain.cycle` (the job: lock, train, register, promote, ledger).
"""

from __future__ import annotations

from nowcast.model_registry import RegistryError
from training.retrain.config import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SKIPPED,
    EvaluationConfig,
    RetrainConfig,
    RetrainSkipped,
    ScheduleConfig,
    Trainer,
    WindowConfig,
    default_trainer,
    load_retrain_config,
    resolve_trainer,
)
from training.retrain.cycle import RetrainResult, run_retrain
from training.retrain.decision import (
    CaseTables,
    Comparison,
    block_bootstrap,
    compare,
    decide,
    evaluate_methods,
    score_of,
    summarize_scores,
)
from training.retrain.periods import Periods, data_summary, plan_periods

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "CaseTables",
    "Comparison",
    "EvaluationConfig",
    "Periods",
    "RegistryError",
    "RetrainConfig",
    "RetrainResult",
    "RetrainSkipped",
    "ScheduleConfig",
    "Trainer",
    "WindowConfig",
    "block_bootstrap",
    "compare",
    "data_summary",
    "decide",
    "default_trainer",
    "evaluate_methods",
    "load_retrain_config",
    "plan_periods",
    "resolve_trainer",
    "run_retrain",
    "score_of",
    "summarize_scores",
]
