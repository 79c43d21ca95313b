"""Score the median ensemble of a repeated event DAP's held-out models.

In a plan with R repetitions every event is held out once per repetition, so R ConvLSTMs were
trained without it (different folds, validation events and seeds). Their median ensemble
(:class:`nowcast.models.ensemble.MedianEnsemble`: a majority vote of the members' threshold
areas, nothing fitted) is therefore an honest held-out forecast of that event too. This scores it
on the plan's start times and writes a run folder beside the plan's (``ensemble-median``) with the
same layout (``results.nc``, ``results.json``, ``report.md``, ``skill.png``, ``ledger.jsonl``), the
ensemble as method ``convlstm`` and the plan run's baselines, so that

    python -m training.dap.ensemble --plan plans/real-events-kfold-sprog-repeated.toml
    python -m training.dap.compare results/real-events-kfold-sprog-repeated/ensemble-median results/real-events-kfold-sprog-repeated

compares it, paired, with the single models (pooled over repetitions) and with S-PROG. The plan
run must be complete (its fold checkpoints are checked against the plan hash). Scoring resumes:
finished tables are reused when their inputs match.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from training.dap.events import (
    LEARNED,
    EventPlan,
    EventRunner,
    add_run_arguments,
    markdown,
    plan_run_out,
    summarise,
)
from training.dap.ledger import code_version, now_iso, package_versions

log = logging.getLogger(__name__)

ENSEMBLE_DIR = "ensemble-median"


class EnsembleError(ValueError):
    """A plan or run that cannot give a median ensemble (too few repetitions, missing folds)."""


def check_repetitions(plan: EventPlan) -> None:
    """Raise :class:`EnsembleError` unless the plan has an odd number (>= 3) of repetitions."""
    reps = plan.splits.repetitions
    if reps < 3 or reps % 2 == 0:
        raise EnsembleError(f"a median ensemble needs an odd number (>= 3) of repetitions; the plan has {reps}")


def member_checkpoints(runner: EventRunner, run: Path) -> dict[str, list[Path]]:
    """Per event, the best checkpoints of the splits that held it out (one per repetition).

    Raises :class:`EnsembleError` for folds not trained to the end under this plan.
    """
    members: dict[str, list[Path]] = {}
    for split in runner.splits:
        best = runner.finished_checkpoint(split, run)
        if best is None:
            raise EnsembleError(f"{runner.fold_dir(split, run)} is not a finished fold of this plan: run `python -m training.dap.events --plan ...` first")
        for event in split["test"]:
            members.setdefault(event, []).append(best)
    return members


def run_ensemble(plan: EventPlan, run: Path, out: Path, device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Score the median ensemble of every event's held-out models and write ``out``; returns the summary."""
    from nowcast.models import create_nowcaster
    from nowcast.models.ensemble import MedianEnsemble

    t0 = time.perf_counter()
    check_repetitions(plan)  # before the runner creates ``out``
    runner = EventRunner(plan, out, device=device, progress=progress)
    members = member_checkpoints(runner, run)
    # each fold's model is loaded once and shared by the ensembles of all its test events
    models = {p: create_nowcaster(LEARNED, checkpoint=p, device=device, guide_cache=runner.guide_cache) for p in sorted({p for ps in members.values() for p in ps})}
    runner.ledger.append({
        "event": "ensemble", "plan_hash": runner.hash, "run": str(run), "rule": "pointwise median of the members' rain rate (majority vote at every threshold)",
        "members": {e: [{"checkpoint": str(p), "version": models[p].version} for p in ps] for e, ps in sorted(members.items())},
        "code_version": code_version(), "packages": package_versions(), "time": now_iso(),
    })
    tables = runner.run_baselines(run)  # the plan run's tables (scored there when missing)
    for event, paths in sorted(members.items()):
        model = MedianEnsemble([models[p] for p in paths])
        key = runner.score_key(LEARNED, model.version, event, {"ensemble": "median", "members": [p.parent.name for p in paths]})
        tables[(LEARNED, event)] = runner.score_table(model.name, model, event, key, out / "tables" / LEARNED / f"{event}.json")
    counts = runner.results(tables)
    summary = summarise(counts, plan, {e.name: e.resolution_class for e in runner.events})
    summary.update(plan=f"{plan.name} ({ENSEMBLE_DIR})", plan_hash=runner.hash, splits=[], wall_seconds=round(time.perf_counter() - t0, 1))
    runner.publish(counts, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.dap.ensemble", description=__doc__.split("\n\n")[0])
    add_run_arguments(p, ENSEMBLE_DIR)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    plan, run, out = plan_run_out(args, ENSEMBLE_DIR)
    try:
        summary = run_ensemble(plan, run, out, device=args.device, progress=not args.no_progress)
    except EnsembleError as exc:
        log.error("%s", exc)
        return 2
    sys.stdout.write(markdown(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
