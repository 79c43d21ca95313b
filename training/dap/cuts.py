"""How much of the ConvLSTM - S-PROG gap could the probability cuts close? A ceiling, with hindsight, per class.

The ConvLSTM's deterministic field says "rain >= t" where its exceedance probability reaches a
per-lead cut fitted on the validation events (:mod:`nowcast.models.calibration`). This asks
whether better cuts would have changed the verdict of a finished event DAP run. For every split
of the run it histograms the held-out model's exceedance probabilities against the observations
(:class:`~nowcast.models.calibration.ExceedanceHistogram`, on the plan's start times) on the
split's validation and test events, and scores the test events with four choices of cut:

- ``cuts-validation``: the checkpoint's cuts (fitted on the validation events of both classes
  together), i.e. what the DAP scored, threshold by threshold;
- ``cuts-class-validation``: cuts fitted on the validation event of the test event's own
  resolution class only (a forecast could do this: it knows its grid);
- ``cuts-hindsight-class``: one set of per-lead cuts fitted with hindsight on all the class's
  held-out forecasts of the analysed splits together: what one perfectly fitted set of cuts would
  score. **Not a forecast** (it looks at the answers);
- ``cuts-hindsight-event``: a cut per held-out forecast of an event and lead, chosen with
  hindsight so that the pooled CSI is the highest any choice of cuts of these probabilities can
  give (:func:`pooled_csi_cuts`): the ceiling of calibration, for CSI, **not a forecast**.

With ``--conditioned`` two more, forecasts too:

- ``cuts-class-validation-conditioned``: two cuts per lead and threshold fitted on the validation
  event of the test event's class, one for the cells where the residual base (S-PROG's nowcast)
  itself reaches the threshold and one for the others
  (:class:`~nowcast.models.calibration.GuideConditionedHistogram`);
- ``cuts-class-validation-switch``: per lead and threshold, whichever scored the higher CSI on the
  validation event of the test event's class: the network's area (the checkpoint's cuts for that
  grid) or S-PROG's own area (:meth:`~nowcast.models.calibration.GuideConditionedHistogram.switch_cuts`).

A model with cuts per resolution class is scored with the cuts of the test event's grid
(``cuts-validation``); a model whose own cuts are guide-conditioned is refused.

Each threshold is cut on its own head (the served field also needs the lower thresholds' cuts,
so ``cuts-validation`` differs from the DAP's own tables by a few cells at 5 mm/h; the report
shows both). Results go to ``<run>/cut-ceiling/`` (``results.nc``, ``results.json``,
``report.md``, ``ceiling.png``, ``ledger.jsonl``); the histograms are cached under ``hist/`` and reused when the
model, store and start times match.

    python -m training.dap.cuts --plan plans/real-events-kfold-sprog-repeated.toml [--repetitions 0 1 2] [--conditioned]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nowcast import dims
from nowcast.evaluation import pool_by_minutes, scores
from nowcast.metrics import ContingencyTable
from nowcast.models.calibration import (
    ExceedanceHistogram,
    GuideConditionedHistogram,
    bin_edge,
    first_bin,
)
from training.dap.events import (
    LEARNED,
    EventPlan,
    EventRunner,
    add_run_arguments,
    lead_time_grid,
    method_scores,
    paired_bootstrap,
    plan_run_out,
    write_outputs,
)
from training.dap.ledger import code_version, now_iso, package_versions

log = logging.getLogger(__name__)

CEILING_DIR = "cut-ceiling"
SCHEMES = ("cuts-validation", "cuts-class-validation", "cuts-hindsight-class", "cuts-hindsight-event")
CONDITIONED = "cuts-class-validation-conditioned"
SWITCH = "cuts-class-validation-switch"
NAMES = {
    "sprog": "S-PROG",
    LEARNED: "ConvLSTM as scored by the DAP",
    "cuts-validation": "ConvLSTM, checkpoint's cuts (validation; its grid's class cuts where it has them)",
    CONDITIONED: "ConvLSTM, cuts conditioned on S-PROG's area, fitted on its class's validation event",
    SWITCH: "ConvLSTM or S-PROG's area per lead and threshold, whichever was better on its class's validation event",
    "cuts-class-validation": "ConvLSTM, cuts fitted on its class's validation event",
    "cuts-hindsight-class": "ConvLSTM, one set of cuts fitted on all its class's held-out events with hindsight (not a forecast)",
    "cuts-hindsight-event": "ConvLSTM, the best cuts per held-out event for the pooled score, with hindsight (the ceiling; not a forecast)",
}


class CeilingError(ValueError):
    """A run that cannot be analysed (unfinished folds, a model without exceedance heads)."""


Histogram = ExceedanceHistogram | GuideConditionedHistogram


def exceedance_histogram(model: Any, runner: EventRunner, event: str, conditioned: bool = False) -> Histogram:
    """Histogram of ``model``'s exceedance probabilities (n_leads, heads) against the observed
    rain of ``event`` at the plan's start times, counting the cells the DAP scores (covered by the
    last input frame and observed); ``conditioned``: split by whether the residual base (S-PROG)
    reaches each threshold (:class:`GuideConditionedHistogram`)."""
    from nowcast.models import motion
    from nowcast.models.convlstm import residual_base_rate

    store, n_leads = runner.stores[event], runner.plan.scores.n_leads
    cad = store.cadence
    heads = tuple(model.config.probability_thresholds)
    hist: Histogram = GuideConditionedHistogram(heads, n_leads) if conditioned else ExceedanceHistogram(heads, n_leads)
    cell_size_m = store.grid.cell_size_m  # picks the prior class of a model with per-class priors
    for t in runner.starts[event]:
        rain, light = motion.history_arrays(store.window(t, model.n_inputs), model.n_inputs, model.name)
        guides = model.guides(rain, light)  # once: the network's input and the conditioning field
        _, _, exceed = model.predict_all(rain, light, cell_size_m, guides=guides)
        if not motion.has_rain(rain):  # the nowcaster forecasts no rain then
            exceed = np.zeros_like(exceed)
        observed = store.window(t + cad * n_leads, n_leads)[dims.RAIN_RATE].values
        covered = np.broadcast_to(np.isfinite(rain[-1]), observed.shape)
        if conditioned:
            hist.accumulate(exceed[:n_leads], observed, residual_base_rate(guides)[:n_leads], covered)
        else:
            hist.accumulate(exceed[:n_leads], observed, covered)
    return hist


def plain(hist: Histogram) -> ExceedanceHistogram:
    """The unconditioned histogram of a (possibly guide-conditioned) one: both sides summed."""
    return hist if isinstance(hist, ExceedanceHistogram) else hist.combined()


def _cached_histogram(path: Path, key: dict[str, Any], compute) -> Histogram:
    parts = ("below", "above") if key.get("conditioned") else ("",)
    if path.is_file():
        with np.load(path) as z:
            if json.loads(str(z["key"])) == key:
                sides = [ExceedanceHistogram(tuple(key["heads"]), int(key["n_leads"]), z[f"{p}positive"].copy(), z[f"{p}negative"].copy()) for p in parts]
                return sides[0] if len(sides) == 1 else GuideConditionedHistogram(tuple(key["heads"]), int(key["n_leads"]), *sides)
    hist = compute()
    sides = [hist] if isinstance(hist, ExceedanceHistogram) else [hist.below, hist.above]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    arrays = {f"{p}{what}": getattr(h, what) for p, h in zip(parts, sides, strict=True) for what in ("positive", "negative")}
    np.savez(tmp, key=json.dumps(key, sort_keys=True), **arrays)
    tmp.replace(path)
    return hist


def table_at(hist: Histogram, cuts: np.ndarray, heads: list[int]) -> ContingencyTable:
    """Contingency table (n_leads, len(heads)) of cutting the probabilities of ``heads`` at ``cuts``
    (n_leads, all heads), or (n_leads, all heads, 2) for a guide-conditioned histogram."""
    counts = hist.counts_at(cuts)[:, heads]  # (K, T, 3): hits, misses, false alarms
    whole = plain(hist)
    total = (whole.positive.sum(-1) + whole.negative.sum(-1))[:, heads]
    t = ContingencyTable.init([hist.thresholds[h] for h in heads], hist.n_leads)
    t.hits[:], t.misses[:], t.false_alarms[:] = counts[..., 0], counts[..., 1], counts[..., 2]
    t.correct_negatives[:] = total - counts.sum(-1)
    return t


def pooled_csi_cuts(hists: list[ExceedanceHistogram], cadence_minutes: list[float]) -> list[np.ndarray]:
    """Per histogram, the cuts (n_leads, heads) that together give the highest CSI pooled over
    all of them at every lead time in minutes (hindsight: the ceiling of any per-event cut).

    Histograms of events of different cadences meet at the lead times they share (``step *
    cadence``, as :func:`nowcast.evaluation.pool_by_minutes` pools them). Pooled CSI is a ratio
    of sums, so the best cut of each event depends on the others': solved exactly over the
    histogram's cut levels from :data:`~nowcast.models.calibration.MIN_CUT` up (those of
    :meth:`ExceedanceHistogram.optimal_cuts`) by Dinkelbach's iteration, which raises the
    pooled CSI until no event's cut can raise it more.
    """
    n_leads, n_heads = hists[0].n_leads, len(hists[0].thresholds)
    first = first_bin()
    cum = []
    for h in hists:
        hits, false, misses = h.cumulative()  # (K, T, N_BINS) forecasting 'yes' from bin b up
        cum.append((hits[..., first:].astype(np.float64), (hits + false + misses)[..., first:].astype(np.float64)))
    best = [np.full((n_leads, n_heads), 0.5) for _ in hists]
    groups: dict[float, list[tuple[int, int]]] = {}
    for i, cad in enumerate(cadence_minutes):
        for k in range(n_leads):
            groups.setdefault(round(cad * (k + 1), 6), []).append((i, k))
    for members in groups.values():
        for j in range(n_heads):
            hit = np.stack([cum[i][0][k, j] for i, k in members])  # (members, bins)
            den = np.stack([cum[i][1][k, j] for i, k in members])
            choice = np.zeros(len(members), dtype=int)  # the lowest cut: the most hits
            ratio = -1.0
            for _ in range(100):
                rows = np.arange(len(members))
                total_den = den[rows, choice].sum()
                new = hit[rows, choice].sum() / total_den if total_den > 0 else 0.0
                if new <= ratio + 1e-15:
                    break
                ratio = new
                choice = np.argmax(hit - ratio * den, axis=1)
            for (i, k), b in zip(members, choice, strict=True):
                best[i][k, j] = bin_edge(int(b) + first)
    return best


def _merged(hists: list[Histogram]) -> Histogram:
    out = type(hists[0])(hists[0].thresholds, hists[0].n_leads)
    for h in hists:
        out.merge(h)
    return out


def _add(tables: dict[tuple[str, str], ContingencyTable], key: tuple[str, str], t: ContingencyTable) -> None:
    if key in tables:
        tables[key].merge(t)
    else:
        tables[key] = t


def run_ceiling(plan: EventPlan, run: Path, out: Path, repetitions: list[int] | None = None, progress: bool = True, conditioned: bool = False) -> dict[str, Any]:
    """Histogram, cut and score every split of ``run`` (or of ``repetitions``); writes ``out``.
    ``conditioned``: also score guide-conditioned cuts fitted on each class's validation event."""
    from tqdm.auto import tqdm

    from nowcast.models import create_nowcaster

    t0 = time.perf_counter()
    runner = EventRunner(plan, out, progress=progress)
    reps = sorted(set(range(plan.splits.repetitions) if repetitions is None else repetitions))
    if not reps or max(reps) >= plan.splits.repetitions or min(reps) < 0:
        raise CeilingError(f"repetitions {reps} are not in the plan (0..{plan.splits.repetitions - 1})")
    if "sprog" not in plan.baselines:
        raise CeilingError("the plan scores no S-PROG: nothing to measure the cuts against")
    splits = [s for s in runner.splits if s["repetition"] in reps]
    checkpoints = {}
    for split in splits:
        best = runner.finished_checkpoint(split, run)
        if best is None:
            raise CeilingError(f"{runner.fold_dir(split, run)} is not a finished fold of this plan: run `python -m training.dap.events --plan ...` first")
        checkpoints[(split["repetition"], split["fold"])] = best
    classes = {e.name: e.resolution_class for e in runner.events}
    thresholds = list(plan.scores.thresholds)
    tables: dict[tuple[str, str], ContingencyTable] = {}
    records = []
    held: list[tuple[str, str, ExceedanceHistogram]] = []  # (split, test event, histogram) of every held-out forecast
    idx: list[int] = []
    bar = tqdm(total=sum(len(s["test"]) + len(s["validation"]) for s in splits), desc="histograms", disable=not progress)
    for split in splits:
        label = f"r{split['repetition']}-f{split['fold']}"
        model = create_nowcaster(LEARNED, checkpoint=checkpoints[(split["repetition"], split["fold"])], guide_cache=runner.guide_cache)
        heads = list(model.config.probability_thresholds)
        if model.calibration is None or not all(t in heads for t in thresholds):
            raise CeilingError(f"{label}: the model has no exceedance heads at {thresholds} mm/h with cuts")
        if conditioned and model.config.advection == "none":
            raise CeilingError(f"{label}: the model has no guide to condition the cuts on")
        if model.calibration.conditioned:
            raise CeilingError(f"{label}: the model's cuts are conditioned on its residual guide; the ceiling is defined for one cut per lead and threshold")
        idx = [heads.index(t) for t in thresholds]
        hists = {}
        for event in split["validation"] + split["test"]:
            hist_key = {**runner.score_key(LEARNED, model.version, event, {"split": label}), "heads": heads, **({"conditioned": True} if conditioned else {})}
            name = f"{event}-conditioned.npz" if conditioned else f"{event}.npz"
            hists[event] = _cached_histogram(out / "hist" / label / name, hist_key, lambda e=event, m=model: exceedance_histogram(m, runner, e, conditioned))
            bar.update(1)
        flat = {e: plain(h) for e, h in hists.items()}
        stored = np.asarray(model.calibration.cuts)[: plan.scores.n_leads]
        val_of = {c: [e for e in split["validation"] if classes[e] == c] for c in plan.classes}
        val_hist = {c: _merged([hists[e] for e in evs]) for c, evs in val_of.items() if evs}  # each class's validation events, once
        class_val = {c: plain(h).optimal_cuts() for c, h in val_hist.items()}
        class_cond = {c: h.optimal_cuts() for c, h in val_hist.items()} if conditioned else {}
        class_switch = {
            c: h.switch_cuts(np.asarray(model.calibration.cuts_for(runner.stores[val_of[c][0]].grid.cell_size_m))[: plan.scores.n_leads])
            for c, h in val_hist.items()
        } if conditioned else {}
        for event in split["test"]:
            own = np.asarray(model.calibration.cuts_for(runner.stores[event].grid.cell_size_m))[: plan.scores.n_leads]
            for scheme, cut in (("cuts-validation", own), ("cuts-class-validation", class_val.get(classes[event], stored))):
                _add(tables, (scheme, event), table_at(flat[event], cut, idx))
            if conditioned and classes[event] in class_cond:
                _add(tables, (CONDITIONED, event), table_at(hists[event], class_cond[classes[event]], idx))
                _add(tables, (SWITCH, event), table_at(hists[event], class_switch[classes[event]], idx))
            key = runner.score_key(LEARNED, model.version, event, {"split": label})  # the DAP's own table of this split
            _add(tables, (LEARNED, event), runner.score_table(LEARNED, model, event, key, runner.learned_table_path(split, event, run)))
            held.append((label, event, flat[event]))
        records.append({"split": label, "checkpoint": str(checkpoints[(split["repetition"], split["fold"])]), "model_version": model.version,
                        "cuts": {"validation": stored[:, idx].round(4).tolist(), **{f"class-validation {c}": v[:, idx].round(4).tolist() for c, v in class_val.items()},
                                 **{f"class-validation-conditioned {c}": v[:, idx].round(4).tolist() for c, v in class_cond.items()},
                                 **{f"class-validation-switch {c}": v[:, idx].round(4).tolist() for c, v in class_switch.items()}}})
    bar.close()
    hindsight: dict[str, Any] = {}
    for c in plan.classes:
        mine = [(label, e, h) for label, e, h in held if classes[e] == c]
        if not mine:
            continue
        common = _merged([h for _, _, h in mine]).optimal_cuts()
        best = pooled_csi_cuts([h for _, _, h in mine], [runner.cadence_min[e] for _, e, _ in mine])
        for (_, event, h), own in zip(mine, best, strict=True):
            _add(tables, ("cuts-hindsight-class", event), table_at(h, common, idx))
            _add(tables, ("cuts-hindsight-event", event), table_at(h, own, idx))
        hindsight[c] = {"class": common[:, idx].round(4).tolist(), "event": {f"{label} {e}": b[:, idx].round(4).tolist() for (label, e, _), b in zip(mine, best, strict=True)}}
    held_out = {e for _, e in tables}  # S-PROG from the plan run's tables (key-checked; scored there when missing)
    tables.update({k: t for k, t in runner.run_baselines(run).items() if k[0] == "sprog" and k[1] in held_out})
    counts = runner.results(tables)
    summary = summarise_ceiling(counts, plan, classes, reps, (*SCHEMES, CONDITIONED, SWITCH) if conditioned else SCHEMES)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    outputs = write_outputs(out, counts, summary, report=ceiling_markdown, figure=("ceiling.png", plot_ceiling))
    runner.ledger.append({"event": "cut-ceiling", "plan_hash": runner.hash, "run": str(run), "repetitions": reps, "conditioned": conditioned, "splits": records, "hindsight_cuts": hindsight, "code_version": code_version(), "packages": package_versions(), "wall_seconds": summary["wall_seconds"], "time": now_iso(), "outputs": outputs})
    return summary


def summarise_ceiling(counts: xr.Dataset, plan: EventPlan, classes: dict[str, str], reps: list[int], schemes: tuple[str, ...] = SCHEMES) -> dict[str, Any]:
    """Pooled CSI/MCC per class of every method, and each minus S-PROG with paired intervals."""
    minutes = list(plan.scores.report_minutes)
    out: dict[str, Any] = {"plan": plan.name, "repetitions": reps, "minutes": minutes, "thresholds": list(plan.scores.thresholds), "schemes": list(schemes), "classes": {}}
    for c in plan.classes:
        evs = sorted(e for e, k in classes.items() if k == c and e in counts["event"].values)
        s = scores(pool_by_minutes(counts, minutes, evs))
        entry: dict[str, Any] = {"events": evs, "scores": method_scores(s, ("csi", "mcc")), "vs_sprog": {}}
        iv = paired_bootstrap(counts, evs, minutes, plan.scores.bootstrap, plan.seed, (LEARNED, *schemes), "sprog")
        for m in (LEARNED, *schemes):
            entry["vs_sprog"][m] = {k: iv[f"{k}:{m}-sprog"] for k in ("csi", "mcc")}
        out["classes"][c] = entry
    return out


def plot_ceiling(summary: dict[str, Any], path: Path) -> None:
    """CSI against lead time per class and threshold: S-PROG, the target (S-PROG + 10 %), the
    ConvLSTM as the DAP scored it, and the hindsight cuts (dashed: not forecasts)."""
    classes, thr, x = list(summary["classes"]), summary["thresholds"], summary["minutes"]
    styles = {"sprog": ("S-PROG", "k", "-"), LEARNED: ("ConvLSTM (DAP)", "C0", "-"),
              "cuts-hindsight-class": ("one set of cuts, hindsight", "C1", "--"), "cuts-hindsight-event": ("ceiling of any cuts, hindsight", "C3", "--")}
    with lead_time_grid(path, len(classes), len(thr), (4.6, 3.6)) as axes:
        for ci, c in enumerate(classes):
            sc = summary["classes"][c]["scores"]
            for ti, t in enumerate(thr):
                ax = axes[ci, ti]
                for m, (label, color, ls) in styles.items():
                    ax.plot(x, [sc[m]["csi"][li][ti] for li in range(len(x))], ls, color=color, marker="o", ms=3, label=label)
                ax.plot(x, [1.1 * sc["sprog"]["csi"][li][ti] for li in range(len(x))], ":", color="0.5", label="target: S-PROG + 10 %")
                ax.set_title(f"{c}: CSI >= {t:g} mm/h", fontsize=9)


def ceiling_markdown(summary: dict[str, Any]) -> str:
    """Per class and threshold: CSI of each method, and minus S-PROG with its interval."""
    minutes = summary["minutes"]
    reps = ", ".join(f"r{r}" for r in summary["repetitions"])
    lines = [f"# Cut ceiling: {summary['plan']} (repetitions {reps})", "",
             "CSI pooled over the held-out events; below each method, its paired difference to S-PROG (95 % bootstrap interval over events). "
             "The rows fitted with hindsight choose their cuts on the held-out answers: they measure how far calibration alone could move the scores of the same probabilities, they are not forecasts.", ""]
    for c, entry in summary["classes"].items():
        lines += [f"## Class {c} ({len(entry['events'])} events)", ""]
        for ti, thr in enumerate(summary["thresholds"]):
            lines += [f"CSI at {thr:g} mm/h:", "", "| method | " + " | ".join(f"{m:g} min" for m in minutes) + " |", "|---" * (len(minutes) + 1) + "|"]
            base = entry["scores"]["sprog"]["csi"]
            for m in ("sprog", LEARNED, *summary.get("schemes", SCHEMES)):
                sc = entry["scores"][m]["csi"]
                lines.append(f"| {NAMES[m]} | " + " | ".join(f"{sc[li][ti]:.3f}" for li in range(len(minutes))) + " |")
                if m != "sprog":
                    d = entry["vs_sprog"][m]["csi"]
                    lines.append("| &nbsp; minus S-PROG | " + " | ".join(f"{sc[li][ti] - base[li][ti]:+.3f} [{d['lo'][li][ti]:+.3f}, {d['hi'][li][ti]:+.3f}]" for li in range(len(minutes))) + " |")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.dap.cuts", description=__doc__.split("\n\n")[0])
    add_run_arguments(p, CEILING_DIR)
    p.add_argument("--repetitions", type=int, nargs="+", default=None, help="default all of the plan's")
    p.add_argument("--conditioned", action="store_true", help="also score guide-conditioned cuts fitted on each class's validation event")
    args = p.parse_args(argv)
    plan, run, out = plan_run_out(args, CEILING_DIR)
    try:
        summary = run_ceiling(plan, run, out, args.repetitions, progress=not args.no_progress, conditioned=args.conditioned)
    except CeilingError as exc:
        log.error("%s", exc)
        return 2
    sys.stdout.write(ceiling_markdown(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
