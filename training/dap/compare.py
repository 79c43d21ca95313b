"""Paired comparison of the learned models of two event-DAP runs on the same held-out events.

Two runs of :mod:`training.dap.events` whose plans share events, folds and start times (e.g. the
CPU recipe ``results/real-events-kfold-sprog`` and the GPU-scale recipe
``results/real-events-kfold-sprog-gpu``) differ only in their ConvLSTM. This pools each run's
counts per resolution class and lead time and reports CSI and MCC of both ConvLSTMs and S-PROG,
with percentile bootstrap intervals over events (the blocks) of the paired differences
``A - B`` and ``A - S-PROG``, on run A's events (run B must hold them all; its others, e.g. of
a resolution class A's plan left out, are ignored and listed in the output). The runs must have scored the same start times: their S-PROG counts
have to be identical, else the comparison refuses.

    python -m training.dap.compare results/real-events-kfold-sprog-gpu results/real-events-kfold-sprog [--exclude EVENT ...] [--name NAME]
    python -m training.dap.compare RUN_A RUN_B --method-a convlstm-r0   # one repetition of a repeated plan

writes ``comparison-<B>.json`` and ``comparison-<B>.md`` (or ``NAME.json`` / ``NAME.md``) into run A's folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nowcast.evaluation import COUNTS, pool_by_minutes, scores
from training.dap.events import LEARNED, method_scores, paired_bootstrap

log = logging.getLogger(__name__)

BASELINE = "sprog"


class ComparisonError(ValueError):
    """Two runs that cannot be compared (different events or start times)."""


def run_label(run: Path, method: str = LEARNED) -> str:
    """A run's learned method as it is labelled in comparisons: the run folder's name, plus
    ``-<method>`` for a non-default one (e.g. ``convlstm-r0``)."""
    return run.name if method == LEARNED else f"{run.name}-{method}"


def stacked_counts(runs: list[tuple[str, xr.Dataset, str]]) -> xr.Dataset:
    """Counts (method, event, step, threshold) holding each run's learned method under its label
    and S-PROG, on the first run's events.

    ``runs``: (label, counts, method) per run. Raises :class:`ComparisonError` when a method is
    absent, a run lacks one of the first run's events, or its S-PROG counts differ from the
    first run's (other start times or stores). The other runs' extra events play no part.
    """
    (first, base, _), parts = runs[0], []
    events = base["event"].values
    for label, run, method in runs:
        if method not in run["method"].values:
            raise ComparisonError(f"{label} has no method {method!r} (it has {sorted(run['method'].values.tolist())})")
        missing = sorted(set(events.tolist()) - set(run["event"].values.tolist()))
        if missing:
            raise ComparisonError(f"{label} lacks events of {first}: {missing}")
        run = run.sel(event=events)
        for c in COUNTS:
            if not np.array_equal(run[c].sel({"method": BASELINE}).values, base[c].sel({"method": BASELINE}).values):
                raise ComparisonError(f"S-PROG {c} differ between {first} and {label}: not the same start times or stores")
        parts.append(run.sel({"method": [method]}).assign_coords(method=[label]))
    parts.append(base.sel({"method": [BASELINE]}))
    return xr.concat(parts, dim="method", data_vars="all", coords="minimal", compat="override")


def combined_counts(a: xr.Dataset, b: xr.Dataset, label_a: str, label_b: str, method_a: str = LEARNED, method_b: str = LEARNED) -> xr.Dataset:
    """Counts (method, event, step, threshold) holding A's and B's ConvLSTM and S-PROG, on A's
    events (:func:`stacked_counts` of the two runs).

    ``method_a`` / ``method_b``: which method of each run is compared (default the pooled
    ConvLSTM; e.g. ``convlstm-r0``, one repetition of a repeated plan).
    """
    return stacked_counts([(label_a, a, method_a), (label_b, b, method_b)])


def compare(run_a: Path, run_b: Path, bootstrap: int = 2000, seed: int = 0, exclude: list[str] | None = None,
            method_a: str = LEARNED, method_b: str = LEARNED) -> dict[str, Any]:
    """Per class: scores of A's and B's ConvLSTM and S-PROG, and paired intervals (see module).

    ``exclude``: events left out of the pools (e.g. a fold whose training did not follow the plan).
    ``method_a`` / ``method_b``: see :func:`combined_counts`; a non-default one is labelled
    ``<run>-<method>``.
    """
    summary_a = json.loads((run_a / "results.json").read_text())
    label_a, label_b = run_label(run_a, method_a), run_label(run_b, method_b)
    with xr.open_dataset(run_a / "results.nc") as da, xr.open_dataset(run_b / "results.nc") as db:
        counts = combined_counts(da.load(), db.load(), label_a, label_b, method_a, method_b)
        only_b = sorted(set(db["event"].values.tolist()) - set(da["event"].values.tolist()))
    minutes = summary_a["minutes"]
    unknown = sorted(set(exclude or []) - set(counts["event"].values.tolist()))
    if unknown:
        raise ComparisonError(f"unknown events to exclude: {unknown}")
    out: dict[str, Any] = {"a": str(run_a), "b": str(run_b), "label_a": label_a, "label_b": label_b, "method_a": method_a, "method_b": method_b, "minutes": minutes, "thresholds": summary_a["thresholds"], "bootstrap": bootstrap,
                           "excluded": sorted(exclude or []), "not_in_a": only_b, "classes": {}}
    for cls, entry in summary_a["classes"].items():
        events = [e for e in entry["events"] if e not in (exclude or [])]
        if not events:
            continue
        s = scores(pool_by_minutes(counts, minutes, events))
        res: dict[str, Any] = {"events": events, "scores": method_scores(s, ("csi", "mcc")), "intervals": {}}
        for other in (label_b, BASELINE):
            ci = paired_bootstrap(counts, events, minutes, bootstrap, seed, label_a, other)
            res["intervals"].update({k: v for k, v in ci.items() if k.endswith(f"{label_a}-{other}")})
        out["classes"][cls] = res
    return out


def markdown(result: dict[str, Any]) -> str:
    """Tables per class, metric and threshold: both ConvLSTMs, S-PROG and the paired differences."""
    a, b = result["label_a"], result["label_b"]
    minutes, lines = result["minutes"], [f"# {a} against {b}: the same held-out events and start times", ""]
    if result.get("excluded"):
        lines += ["Events left out: " + ", ".join(result["excluded"]), ""]
    if result.get("not_in_a"):
        lines += [f"Events of {b} that {a} did not score (left out): " + ", ".join(result["not_in_a"]), ""]
    for cls, res in result["classes"].items():
        lines += [f"## Class {cls} ({len(res['events'])} events)", ""]
        for metric in ("csi", "mcc"):
            for ti, thr in enumerate(result["thresholds"]):
                lines += [f"{metric.upper()} at {thr:g} mm/h (differences: 95 % bootstrap interval over events):", ""]
                lines += ["| | " + " | ".join(f"{m:g} min" for m in minutes) + " |", "|---" * (len(minutes) + 1) + "|"]
                for m, sc in res["scores"].items():
                    lines.append(f"| {m} | " + " | ".join(f"{v[ti]:.3f}" for v in sc[metric]) + " |")
                for other in (b, BASELINE):
                    d = res["intervals"][f"{metric}:{a}-{other}"]
                    x, y = res["scores"][a][metric], res["scores"][other][metric]
                    lines.append(f"| {a} - {other} | " + " | ".join(
                        f"{x[i][ti] - y[i][ti]:+.3f} [{d['lo'][i][ti]:+.3f}, {d['hi'][i][ti]:+.3f}]" for i in range(len(minutes))) + " |")
                lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.dap.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--exclude", nargs="*", default=[], metavar="EVENT", help="events left out of the pools")
    p.add_argument("--name", default=None, help="output name (default comparison-<B>)")
    p.add_argument("--method-a", default=LEARNED, help="run A's method compared (default the pooled ConvLSTM; convlstm-rN: repetition N)")
    p.add_argument("--method-b", default=LEARNED, help="run B's method compared (as --method-a)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = compare(args.run_a, args.run_b, args.bootstrap, exclude=args.exclude, method_a=args.method_a, method_b=args.method_b)
    except (ComparisonError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    name = args.name or f"comparison-{args.run_b.name}"
    (args.run_a / f"{name}.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (args.run_a / f"{name}.md").write_text(text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
