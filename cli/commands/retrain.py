"""``nowcast retrain --config FILE [--set key=value ...]``: one batch retrain cycle.

Trains a challenger on the most recent period of the observation store, evaluates it against
the champion and the baseline on the most recent held-out period and promotes it only when it
is better (see :mod:`training.retrain` and docs/retraining.md). Ready for cron / a Kubernetes
CronJob: logs to stderr, one summary line on stdout, exit codes

- 0: a decision was made (challenger promoted, or champion kept: the reason is printed);
- 1: failed (nothing was promoted; the reason is on stderr and in the ledger);
- 2: invalid configuration or arguments;
- 3: skipped (another retrain holds the lock, the store is empty, the training window has no
  rain, too few usable evaluation start times, no held-out period yet).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="retrain configuration (TOML/YAML), see configs/retrain.toml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one value, e.g. --set window.train_hours=24 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from nowcast.config import ConfigError
    from nowcast.model_registry import RegistryError
    from training.retrain import EXIT_CONFIG, EXIT_FAILED, load_retrain_config, run_retrain

    try:
        cfg = load_retrain_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"nowcast retrain: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.getLogger("training.retrain").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = run_retrain(cfg, progress=not args.no_progress and sys.stderr.isatty())
    except RegistryError as exc:  # missing / read-only registry: nothing was done
        print(f"nowcast retrain: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(result.record(), indent=2, default=str))
    else:
        print(f"retrain {result.run_id}: {result.decision}"
              + (f" {result.challenger}" if result.challenger else "") + f": {result.reason}")
    if result.decision in ("skipped", "failed"):
        print(f"nowcast retrain: {result.decision}: {result.reason}", file=sys.stderr)
    return result.exit_code
