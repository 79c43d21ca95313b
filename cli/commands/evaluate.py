"""``nowcast evaluate``: run a DAP evaluation plan (ledger + results + skill report), or verify one split.

    nowcast evaluate --plan plans/synthetic-smoke.toml [--out DIR] [--workers N | --scheduler ADDR]
    nowcast evaluate --verify OUT/ledger.jsonl --split N

Exit codes: 0 success (verify: identical), 1 verify found differences, 2 bad plan/input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

help = "run a DAP evaluation plan (ledger + skill report); --verify"  # noqa: A001


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", type=Path, help="plan file (TOML/YAML), see docs/evaluation.md")
    p.add_argument("--out", type=Path, help="output folder (default var/evaluations/<plan name>)")
    p.add_argument(
        "--workers",
        type=int,
        help="dask LocalCluster workers (0 = in-process, no dask); overrides run.workers",
    )
    p.add_argument(
        "--scheduler", metavar="ADDRESS", help="use an existing dask scheduler (tcp://host:8786)"
    )
    p.add_argument(
        "--device", help="torch device for learned methods (cpu, cuda, auto); overrides run.device"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one plan value, e.g. --set splits.folds=3 (repeatable)",
    )
    p.add_argument("--no-report", action="store_true", help="skip the HTML skill report")
    p.add_argument(
        "--verify", type=Path, metavar="LEDGER", help="recompute one split of LEDGER and compare"
    )
    p.add_argument("--split", type=int, help="split index to verify (with --verify)")


def run(args: argparse.Namespace) -> int:
    from cli import CommandError
    from training.dap.ledger import LedgerError
    from training.dap.plan import PlanError, load_plan

    if args.verify is not None:
        if args.split is None:
            raise CommandError("--verify needs --split N (the split index to recompute)")
        from training.dap.verify import verify

        try:
            res = verify(args.verify, args.split, device=args.device)
        except (LedgerError, PlanError) as exc:
            raise CommandError(str(exc)) from exc
        print(res.summary, file=sys.stdout if res.identical else sys.stderr)
        return 0 if res.identical else 1
    if args.plan is None:
        raise CommandError("give --plan PLAN.toml (or --verify LEDGER --split N)")
    if args.workers is not None and args.workers < 0:
        raise CommandError(f"--workers must be >= 0, got {args.workers}")
    from training.dap.runner import evaluate

    try:
        plan = load_plan(args.plan, args.overrides)
        out = args.out or Path("var") / "evaluations" / plan.name
        res = evaluate(
            plan,
            out,
            workers=args.workers,
            scheduler=args.scheduler,
            device=args.device,
            plan_path=str(args.plan),
            report=not args.no_report,
        )
    except PlanError as exc:
        raise CommandError(str(exc)) from exc
    print(f"plan {res.plan_hash[:12]}: {res.results.sizes['split']} splits in {res.wall_s:.1f} s")
    print(f"ledger:  {res.ledger}")
    print(f"results: {res.results_nc} , {res.results_json}")
    if res.report is not None:
        print(f"report:  {res.report}")
    return 0
