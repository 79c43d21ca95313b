"""Learning curve of the ConvLSTM over event-DAP runs that differ only in how many events it trained on.

Runs of :mod:`training.dap.events` on the same folds, test events and start times, whose plans
train on a share of each fold's training events (``splits.train_fraction``), are put side by side:
per resolution class, the mean number of training events per fold of each run, the ConvLSTM's and
S-PROG's pooled CSI/MCC, and percentile bootstrap intervals over events (the blocks) of each
ConvLSTM minus S-PROG and of each smaller run minus the largest. The runs must have scored the same
start times (identical S-PROG counts), else the tool refuses.

A log-linear fit of ConvLSTM - S-PROG against log2(training events) gives, per class, lead and
threshold, the gain per doubling of the events and the doublings the target (+10 % over
S-PROG) would need at that rate: an extrapolation from a few points, labelled as such.

    python -m training.dap.learning_curve results/real-events-kfold-sprog-events-quarter \\
        results/real-events-kfold-sprog-events-half results/real-events-kfold-sprog-2kmcuts:convlstm-r0 \\
        --out results/learning-curve-sprog

writes ``learning-curve.json``, ``learning-curve.md`` and ``learning-curve.png`` into ``--out``.
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

from nowcast.evaluation import pool_by_minutes, scores
from training.dap.compare import BASELINE, ComparisonError, run_label, stacked_counts
from training.dap.events import LEARNED, is_repetition_method, method_scores, paired_bootstrap

log = logging.getLogger(__name__)

#: the issue's target: the ConvLSTM's CSI/MCC at least this share above S-PROG's
TARGET_GAIN = 0.10


def parse_run(spec: str) -> tuple[Path, str]:
    """``RUN`` or ``RUN:METHOD`` -> (run folder, learned method; default the pooled ConvLSTM)."""
    run, _, method = spec.partition(":")
    return Path(run), method or LEARNED


def training_events(summary: dict[str, Any], method: str) -> dict[str, float]:
    """Mean number of training events per fold and class of the splits that made ``method``
    (``convlstm-rN``: repetition N's; the pooled ConvLSTM: every split)."""
    rep = int(method.rsplit("-r", 1)[1]) if is_repetition_method(method) else None
    splits = [s for s in summary["splits"] if rep is None or s["repetition"] == rep]
    if not splits:
        raise ComparisonError(f"{summary['plan']}: no split records for {method!r}")
    cls_of = {e: c for c, entry in summary["classes"].items() for e in entry["events"]}  # every event is held out once
    return {c: float(np.mean([sum(cls_of.get(e) == c for e in s["train"]) for s in splits])) for c in summary["classes"]}


def run_counts(runs: list[tuple[Path, str]]) -> tuple[xr.Dataset, list[str], list[dict[str, Any]]]:
    """Counts of every run's learned method (labelled by :func:`run_label`) and S-PROG on the
    first run's events (:func:`stacked_counts`); returns (counts, labels, summaries)."""
    labels = [run_label(run, method) for run, method in runs]
    if len(set(labels)) < len(labels):
        raise ComparisonError(f"two runs share a label (run folder name and method): {labels}")
    summaries, loaded = [], []
    for (run, method), label in zip(runs, labels, strict=True):
        summaries.append(json.loads((run / "results.json").read_text()))
        with xr.open_dataset(run / "results.nc") as ds:
            loaded.append((label, ds.load(), method))
    return stacked_counts(loaded), labels, summaries


def log_linear_fit(n_events: list[float], diffs: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """Least-squares slope of ``diffs`` (R, L, T) against log2(n_events) (R runs), and the
    doublings beyond the largest run the target differences (L, T) would need at that slope
    (None where the slope is not positive or the target is already met)."""
    x = np.log2(np.asarray(n_events, dtype=float))
    xc = x - x.mean()
    slope = np.tensordot(xc, diffs - diffs.mean(axis=0), axes=(0, 0)) / float((xc**2).sum())
    last = diffs[int(np.argmax(x))]
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where((slope > 0) & (target > last), (target - last) / slope, np.nan)
    need = np.where(target <= last, 0.0, need)
    return {"per_doubling": slope.round(4).tolist(), "doublings_to_target": [[None if np.isnan(v) else round(float(v), 1) for v in row] for row in need]}


def learning_curve(runs: list[tuple[Path, str]], bootstrap: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per class: training events, scores, intervals and the log-linear fit (see module)."""
    if len(runs) < 2:
        raise ComparisonError("a learning curve needs at least two runs")
    counts, labels, summaries = run_counts(runs)
    minutes, thresholds = summaries[0]["minutes"], summaries[0]["thresholds"]
    out: dict[str, Any] = {"runs": [{"run": str(r), "method": m, "label": lab} for (r, m), lab in zip(runs, labels, strict=True)],
                           "minutes": minutes, "thresholds": thresholds, "bootstrap": bootstrap, "target_gain": TARGET_GAIN, "classes": {}}
    n_train = [training_events(s, m) for s, (_, m) in zip(summaries, runs, strict=True)]
    for cls, entry in summaries[0]["classes"].items():
        events = entry["events"]
        s = scores(pool_by_minutes(counts, minutes, events))
        sc = method_scores(s, ("csi", "mcc"))
        n = [nt[cls] for nt in n_train]
        largest = labels[int(np.argmax(n))]
        res: dict[str, Any] = {"events": events, "training_events": dict(zip(labels, n, strict=True)), "largest": largest, "scores": sc, "intervals": {}}
        res["intervals"].update({k: v for k, v in paired_bootstrap(counts, events, minutes, bootstrap, seed, labels, BASELINE).items() if k.endswith(f"-{BASELINE}")})
        smaller = [lab for lab in labels if lab != largest]
        ci = paired_bootstrap(counts, events, minutes, bootstrap, seed, smaller, largest)
        res["intervals"].update({k: v for k, v in ci.items() if k.endswith(f"-{largest}")})
        res["fit"] = {}
        for metric in ("csi", "mcc"):
            diffs = np.stack([np.asarray(sc[lab][metric]) - np.asarray(sc[BASELINE][metric]) for lab in labels])  # (R, L, T)
            target = TARGET_GAIN * np.asarray(sc[BASELINE][metric])
            res["fit"][metric] = log_linear_fit(n, diffs, target)
        out["classes"][cls] = res
    return out


def markdown(result: dict[str, Any]) -> str:
    """Per class and threshold: CSI of every run and S-PROG, the differences with intervals, the fit."""
    minutes, lines = result["minutes"], ["# Learning curve: the same held-out events and start times, fewer training events", ""]
    for cls, res in result["classes"].items():
        n, largest = res["training_events"], res["largest"]
        lines += [f"## Class {cls} ({len(res['events'])} held-out events)", "",
                  "Training events per fold (mean over folds): " + ", ".join(f"{lab} {v:.2f}" for lab, v in n.items()), ""]
        for metric in ("csi", "mcc"):
            for ti, thr in enumerate(result["thresholds"]):
                lines += [f"{metric.upper()} at {thr:g} mm/h (differences: 95 % bootstrap interval over events):", "",
                          "| | " + " | ".join(f"{m:g} min" for m in minutes) + " |", "|---" * (len(minutes) + 1) + "|"]
                sc = res["scores"]
                for lab in [*n, BASELINE]:
                    lines.append(f"| {lab} | " + " | ".join(f"{v[ti]:.3f}" for v in sc[lab][metric]) + " |")
                for a, b in [*((lab, BASELINE) for lab in n), *((lab, largest) for lab in n if lab != largest)]:
                    d = res["intervals"][f"{metric}:{a}-{b}"]
                    lines.append(f"| {a} - {b} | " + " | ".join(
                        f"{sc[a][metric][i][ti] - sc[b][metric][i][ti]:+.3f} [{d['lo'][i][ti]:+.3f}, {d['hi'][i][ti]:+.3f}]" for i in range(len(minutes))) + " |")
                fit = res["fit"][metric]
                lines.append("| gain over S-PROG per doubling of events (log-linear fit) | " + " | ".join(f"{row[ti]:+.4f}" for row in fit["per_doubling"]) + " |")
                lines.append("| doublings to the target at that rate (extrapolation) | " + " | ".join(
                    "-" if row[ti] is None else f"{row[ti]:g}" for row in fit["doublings_to_target"]) + " |")
                lines.append("")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path, threshold: float = 1.0, leads: tuple[float, ...] = (30.0, 60.0)) -> None:
    """ConvLSTM - S-PROG CSI at ``threshold`` against training events (log scale), per class and
    lead (those of ``leads`` the runs report, else their last two), with intervals and the
    target's line."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threshold = threshold if threshold in result["thresholds"] else result["thresholds"][0]
    ti = result["thresholds"].index(threshold)
    leads = tuple(m for m in leads if m in result["minutes"]) or tuple(result["minutes"][-2:])
    classes = list(result["classes"])
    fig, axes = plt.subplots(1, len(classes), figsize=(4.6 * len(classes), 3.6), squeeze=False)
    try:
        for ax, cls in zip(axes[0], classes, strict=True):
            res = result["classes"][cls]
            labels = list(res["training_events"])
            n = [res["training_events"][lab] for lab in labels]
            order = np.argsort(n)
            for lead in leads:
                li = result["minutes"].index(lead)
                sc = res["scores"]
                y = np.array([sc[lab]["csi"][li][ti] - sc[BASELINE]["csi"][li][ti] for lab in labels])[order]
                lo = np.array([res["intervals"][f"csi:{lab}-{BASELINE}"]["lo"][li][ti] for lab in labels])[order]
                hi = np.array([res["intervals"][f"csi:{lab}-{BASELINE}"]["hi"][li][ti] for lab in labels])[order]
                x = np.asarray(n)[order]
                line = ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=f"{lead:g} min")
                ax.axhline(result["target_gain"] * sc[BASELINE]["csi"][li][ti], ls="--", lw=1, color=line[0].get_color(), alpha=0.7)
            ax.axhline(0.0, color="k", lw=0.8)
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.set_xlabel("training events per fold (mean)")
            ax.set_ylabel(f"ConvLSTM - S-PROG, CSI at {threshold:g} mm/h")
            ax.set_title(f"{cls}: dashed = the target (+{result['target_gain']:.0%} over S-PROG)", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.dap.learning_curve", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN[:METHOD]", help="event-DAP run folders (METHOD: e.g. convlstm-r0, one repetition)")
    p.add_argument("--out", type=Path, required=True, help="folder for learning-curve.json/.md/.png")
    p.add_argument("--bootstrap", type=int, default=2000)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = learning_curve([parse_run(r) for r in args.runs], args.bootstrap)
    except (ComparisonError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learning-curve.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (args.out / "learning-curve.md").write_text(text)
    plot(result, args.out / "learning-curve.png")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
