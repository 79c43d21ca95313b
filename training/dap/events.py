"""Event-blocked DAP: K-fold over whole radar events, repeated with seeds, every event held out once.

The plan (``plans/real-events-kfold.toml``, schema :class:`EventPlan`) is fixed before any
work and hashed (:func:`plan_hash`). Blocks are the events of a catalogue
(:mod:`training.events`); within each resolution class the events are shuffled with the
repetition's seed and dealt round-robin into ``folds`` folds. For each (repetition, fold):

1. training events = the other folds' events; of those, ``validation_events`` per class (drawn
   with the same seed) are held out of the gradient steps and used for early stopping and for
   the probability cuts of the deterministic field (never the test events); a learning-curve
   plan (``splits.train_fraction`` < 1) then trains on a seeded share of the rest;
2. the ConvLSTM is trained (:func:`training.api.fit_many`) from the plan's training config;
3. every start time (every ``start_stride``-th) of each held-out event is forecast and scored.

Baselines (persistence, LK extrapolation, S-PROG) have no training: each event is scored once on
the same start times. A plan may name baseline variants (``[baseline_options.LABEL]`` with
``method = "sprog"`` and that nowcaster's options, e.g. another optical flow): each is scored like
a baseline and paired with S-PROG; with ``learned = false`` a plan scores baselines only (a study of
baseline settings, no training). Contingency tables are kept per (method, event, lead step, threshold)
and pooled by lead time in minutes (events of 10- and 15-minute cadence contribute at their own
lead times). Intervals: a percentile bootstrap over events (the blocks) within each class, with
the paired difference ConvLSTM - S-PROG computed on the same resampled events.

Every step is recorded in ``ledger.jsonl`` (plan, hash, code version, data fingerprints,
timings, checkpoints); results go to ``results.nc`` / ``results.json`` / ``report.md`` /
``skill.png``. A run resumes: finished tables and checkpoints are reused when their inputs match.

    python -m training.dap.events --plan plans/real-events-kfold-sprog.toml [--out results/real-events-kfold-sprog]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nowcast.config import load_config
from nowcast.evaluation import (
    COUNTS,
    pool_by_minutes,
    score_starts,
    scores,
    start_times,
    tables_dataset,
)
from nowcast.metrics import ContingencyTable
from nowcast.provenance import data_fingerprint, source_fingerprint
from training.dap.ledger import Ledger, code_version, now_iso, package_versions
from training.events import Catalogue, EventSpec, load_catalogue, open_event_store, training_parts

log = logging.getLogger(__name__)

LEARNED = "convlstm"


def repetition_method(repetition: int) -> str:
    """Method label of the ConvLSTM's counts of one repetition (``convlstm-r0``, ...)."""
    return f"{LEARNED}-r{repetition}"


def is_repetition_method(method: str) -> bool:
    """Whether ``method`` labels one repetition's ConvLSTM counts (see :func:`repetition_method`)."""
    return method.startswith(f"{LEARNED}-r") and method[len(LEARNED) + 2:].isdigit()


class EventSplits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    folds: int = Field(3, ge=2, description="folds over events, per resolution class")
    repetitions: int = Field(1, ge=1, description="repetitions with different seeds")
    validation_events: int = Field(1, ge=1, description="training events per class held out for early stopping and calibration")
    train_fraction: float = Field(
        1.0, gt=0.0, le=1.0,
        description="share of each class's training events (after validation) the ConvLSTM is trained on, drawn with the split's "
        "seed, nested across fractions; < 1 for a learning curve (test and validation events unchanged)",
    )


class EventScores(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    thresholds: list[float] = Field(default_factory=lambda: [1.0, 5.0], description="mm/h")
    n_leads: int = Field(15, ge=1, description="lead steps (of each event's cadence)")
    report_minutes: list[float] = Field(default_factory=lambda: [5, 10, 15, 20, 30, 45, 60, 75])
    n_inputs: int = Field(6, ge=1, description="input frames a start time needs stored")
    start_stride: int = Field(2, ge=1, description="score every n-th start time")
    bootstrap: int = Field(2000, ge=100, description="bootstrap resamples of events")


class EventPlan(BaseModel):
    """A whole event-blocked plan file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    catalogue: str = Field("configs/events-real.toml")
    classes: list[str] = Field(default_factory=lambda: ["2km", "240m"])
    seed: int = 0
    splits: EventSplits = Field(default_factory=EventSplits)
    scores: EventScores = Field(default_factory=EventScores)
    baselines: list[str] = Field(default_factory=lambda: ["persistence", "extrapolation", "sprog"], description="registered nowcasters or labels of `baseline_options`")
    baseline_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named baseline variants: label -> {method = a registered nowcaster, its options...}; "
        "each is scored like a baseline and paired with S-PROG",
    )
    learned: bool = Field(True, description="train and score the ConvLSTM (false: a plan of baselines only)")
    train_config: str = Field("configs/train-real-events.toml", description="[model] and [train] tables of the ConvLSTM")
    train_overrides: list[str] = Field(default_factory=list, description="KEY=VALUE overrides of the training config for the folds (e.g. a CPU budget)")
    threads: int = Field(2, ge=1, description="torch threads")

    @model_validator(mode="after")
    def _check_baselines(self) -> EventPlan:
        from nowcast.models import MODELS

        known = set(MODELS.names())
        for label, options in self.baseline_options.items():
            if label in known:
                raise ValueError(f"baseline variant {label!r} shadows the registered nowcaster of that name")
            if options.get("method") not in known:
                raise ValueError(f"baseline variant {label!r}: method must be one of {sorted(known)}, got {options.get('method')!r}")
        unknown = [b for b in self.baselines if b not in known and b not in self.baseline_options]
        if unknown:
            raise ValueError(f"baselines {unknown} are neither registered nowcasters nor labels of baseline_options")
        return self

    def baseline(self, name: str) -> tuple[str, dict[str, Any]]:
        """(registered nowcaster, options) of the baseline ``name``."""
        options = dict(self.baseline_options.get(name, {"method": name}))
        return options.pop("method"), options


def train_options(plan: EventPlan) -> dict[str, Any]:
    """The ``[model]`` and ``[train]`` tables of the plan's training config, with its overrides."""
    from nowcast.config import apply_overrides, read_mapping

    options = apply_overrides(read_mapping(plan.train_config), plan.train_overrides)
    return {k: v for k, v in options.items() if k in ("model", "train")}


def plan_hash(plan: EventPlan, train_options: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the plan and the training options it names."""
    dump = plan.model_dump()
    for *parents, key, default in (("baseline_options", {}), ("learned", True), ("splits", "train_fraction", 1.0)):  # later fields: earlier plans keep their hash
        table = dump
        for parent in parents:
            table = table[parent]
        if table[key] == default:
            del table[key]
    text = json.dumps({"plan": dump, "train": train_options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def assign_folds(events: list[EventSpec], classes: list[str], folds: int, seed: int) -> list[list[str]]:
    """Per class, shuffle events with ``seed`` and deal them round-robin into ``folds`` folds."""
    rng = np.random.default_rng(seed)
    out: list[list[str]] = [[] for _ in range(folds)]
    for c in classes:
        names = [e.name for e in events if e.resolution_class == c]
        if len(names) < folds:
            raise ValueError(f"class {c!r} has {len(names)} events, fewer than {folds} folds")
        for i, j in enumerate(rng.permutation(len(names))):
            out[i % folds].append(names[j])
    return out


def choose_validation(train_events: list[EventSpec], classes: list[str], n: int, seed: int, cadence: str = "5min") -> list[str]:
    """``n`` training events per class (seeded) used only for early stopping and calibration.

    Only events at the model's ``cadence`` qualify: the probability cuts are fitted per lead
    *step*, and a 15-minute event's step 6 (90 min) would set the cut of a 5-minute step 6.
    """
    rng = np.random.default_rng(seed + 7919)
    out: list[str] = []
    for c in classes:
        names = sorted(e.name for e in train_events if e.resolution_class == c and pd.Timedelta(e.cadence) == pd.Timedelta(cadence))
        if len(names) <= n:
            raise ValueError(f"class {c!r}: {len(names)} training events at cadence {cadence} cannot spare {n} for validation")
        out += [names[i] for i in rng.choice(len(names), size=n, replace=False)]
    return out


def subsample_training(train_events: list[EventSpec], classes: list[str], fraction: float, seed: int) -> list[str]:
    """Sorted names of the training events kept: per class, the first ``floor(fraction * n + 0.5)``
    (at least one) of a seeded permutation of its ``n`` events, so that for one seed a smaller
    fraction keeps a subset of a larger one (a learning curve adds events, it does not swap
    them). ``fraction`` 1 keeps every event.
    """
    if fraction >= 1.0:
        return sorted(e.name for e in train_events)
    rng = np.random.default_rng(seed + 104729)
    out: list[str] = []
    for c in classes:
        names = sorted(e.name for e in train_events if e.resolution_class == c)
        keep = max(1, int(np.floor(fraction * len(names) + 0.5)))
        out += [names[i] for i in rng.permutation(len(names))[:keep]]
    return sorted(out)


def table_path(out: Path, method: str, event: str) -> Path:
    return out / "tables" / method / f"{event}.json"


def _load_table(path: Path, key: dict[str, Any]) -> ContingencyTable | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("key") != key:
        return None
    return ContingencyTable.from_dict(data["table"])


def _save_table(path: Path, key: dict[str, Any], table: ContingencyTable, seconds: float) -> None:
    from nowcast.durability import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"key": key, "seconds": round(seconds, 2), "table": table.to_dict()}).encode())


class EventRunner:
    """Runs one plan into ``out``; see the module docstring."""

    def __init__(self, plan: EventPlan, out: Path, device: str = "cpu", progress: bool = True) -> None:
        import torch

        self.plan, self.out, self.device, self.progress = plan, out, device, progress
        self.catalogue: Catalogue = load_catalogue(plan.catalogue)
        self.events = [e for e in self.catalogue.event if e.resolution_class in plan.classes]
        self.train_options = train_options(plan)
        self.hash = plan_hash(plan, self.train_options)
        #: the recipe's guide cache, shared by training and the ConvLSTM's scoring
        self.guide_cache: str | None = self.train_options.get("train", {}).get("cache_dir")
        self.stores = {e.name: open_event_store(self.catalogue, e) for e in self.events}
        self.starts = {e.name: start_times(self.stores[e.name], plan.scores.n_inputs, plan.scores.start_stride) for e in self.events}
        self.cadence_min = {e.name: self.stores[e.name].cadence / pd.Timedelta(minutes=1) for e in self.events}
        self.splits = self.fold_plan()  # an unsatisfiable plan fails here, before any work
        out.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(out / "ledger.jsonl")
        torch.set_num_threads(plan.threads)

    def score_key(self, method: str, version: str, event: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        starts = self.starts[event]
        return {
            "method": method,
            "version": version,
            "store_version": str(self.stores[event].version),
            "starts": hashlib.sha256("|".join(t.isoformat() for t in starts).encode()).hexdigest()[:16],
            "thresholds": list(self.plan.scores.thresholds),
            "n_leads": self.plan.scores.n_leads,
            **(extra or {}),
        }

    def score_table(self, label: str, model: Any, event: str, key: dict[str, Any], path: Path) -> ContingencyTable:
        from tqdm.auto import tqdm

        cached = _load_table(path, key)
        if cached is not None:
            return cached
        sc = self.plan.scores
        with tqdm(total=len(self.starts[event]), desc=f"{label} {event}", disable=not self.progress, leave=False) as bar:
            table, seconds = score_starts(model, self.stores[event], self.starts[event], sc.thresholds, sc.n_leads, progress=bar)
        _save_table(path, key, table, seconds)
        log.info("%s on %s: %d start times in %.0f s", label, event, len(self.starts[event]), seconds)
        return table

    # -- stages ------------------------------------------------------------------------
    def run_baselines(self, root: Path | None = None) -> dict[tuple[str, str], ContingencyTable]:
        """Every baseline on every event; tables read from / written to ``root`` (default this run)."""
        from nowcast.models import create_nowcaster

        out = {}
        for name in self.plan.baselines:
            method, options = self.plan.baseline(name)
            model = create_nowcaster(method, **options)
            for ev in self.events:
                key = self.score_key(name, str(model.version), ev.name, {"nowcaster": method, "options": options} if options else None)
                out[(name, ev.name)] = self.score_table(name, model, ev.name, key, table_path(root or self.out, name, ev.name))
        return out

    def fold_plan(self) -> list[dict[str, Any]]:
        """(repetition, fold, test events, validation events, training events) of every split."""
        splits = []
        for r in range(self.plan.splits.repetitions):
            seed = self.plan.seed + 1000 * r
            folds = assign_folds(self.events, self.plan.classes, self.plan.splits.folds, seed)
            for f, test in enumerate(folds):
                train = [e for e in self.events if e.name not in test]
                cadence = f"{self.train_options.get('model', {}).get('cadence_minutes', 5)}min"
                val = choose_validation(train, self.plan.classes, self.plan.splits.validation_events, seed + f, cadence)
                kept = subsample_training([e for e in train if e.name not in val], self.plan.classes, self.plan.splits.train_fraction, seed + f)
                splits.append({"repetition": r, "fold": f, "seed": seed + f, "test": sorted(test), "validation": sorted(val), "train": kept})
        return splits

    def learned_table_path(self, split: dict[str, Any], event: str, root: Path | None = None) -> Path:
        """Where one split's ConvLSTM table of a held-out event lives under ``root`` (default this run)."""
        return (root or self.out) / "tables" / LEARNED / f"r{split['repetition']}" / f"{event}.json"

    def fold_dir(self, split: dict[str, Any], root: Path | None = None) -> Path:
        """Folder of one split's training under ``root`` (default this run)."""
        return (root or self.out) / "folds" / f"r{split['repetition']}-f{split['fold']}"

    def finished_checkpoint(self, split: dict[str, Any], root: Path | None = None) -> Path | None:
        """The best checkpoint of a split trained to the end under this plan (hash and split
        match its ``done.json``), or None."""
        fold = self.fold_dir(split, root)
        marker, best = fold / "done.json", fold / "best.pt"
        if marker.is_file() and best.is_file() and json.loads(marker.read_text()).get("ident") == {"plan_hash": self.hash, "split": split}:
            return best
        return None

    def train_split(self, split: dict[str, Any]) -> Path:
        """Train (or reuse) the ConvLSTM of one split; returns its best checkpoint."""
        from training.api import fit_many

        done = self.finished_checkpoint(split)
        if done is not None:
            return done
        out_dir = self.fold_dir(split)
        ident = {"plan_hash": self.hash, "split": split}
        parts = training_parts(self.stores, split["train"], split["validation"])
        t0 = time.perf_counter()
        best = fit_many(self.train_options, parts, seed=split["seed"], device=self.device, out_dir=out_dir)
        seconds = time.perf_counter() - t0
        (out_dir / "done.json").write_text(json.dumps({"ident": ident, "train_seconds": round(seconds, 1)}))
        return best

    def run_splits(self) -> tuple[dict[tuple[str, str], ContingencyTable], list[dict[str, Any]]]:
        from nowcast.models import create_nowcaster

        tables: dict[tuple[str, str], ContingencyTable] = {}
        records = []
        for split in self.splits:
            t0 = time.perf_counter()
            ckpt = self.train_split(split)
            train_s = json.loads((ckpt.parent / "done.json").read_text()).get("train_seconds")
            model = create_nowcaster(LEARNED, checkpoint=ckpt, device=self.device, guide_cache=self.guide_cache)
            for name in split["test"]:
                key = self.score_key(LEARNED, model.version, name, {"split": f"r{split['repetition']}-f{split['fold']}"})
                t = self.score_table(LEARNED, model, name, key, self.learned_table_path(split, name))
                if self.plan.splits.repetitions > 1:  # each repetition's own counts too (the pooled ones merge)
                    tables[(repetition_method(split["repetition"]), name)] = t
                if (LEARNED, name) in tables:
                    tables[(LEARNED, name)].merge(t)
                else:
                    tables[(LEARNED, name)] = ContingencyTable.from_dict(t.to_dict())
            rec = {"event": "split", "plan_hash": self.hash, **split, "checkpoint": str(ckpt), "model_version": model.version, "train_seconds": train_s, "seconds": round(time.perf_counter() - t0, 1), "time": now_iso()}
            self.ledger.append(rec)
            records.append(rec)
        return tables, records

    # -- results -----------------------------------------------------------------------
    def results(self, tables: dict[tuple[str, str], ContingencyTable]) -> xr.Dataset:
        counts = tables_dataset(tables, self.cadence_min)
        counts.attrs.update(plan=self.plan.name, plan_hash=self.hash, code_version=json.dumps(code_version()))
        return counts

    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.ledger.append({
            "event": "plan", "plan_hash": self.hash, "plan": self.plan.model_dump(), "train_options": self.train_options,
            "code_version": code_version(), "packages": package_versions(), "time": now_iso(),
            "data": {e.name: {"store": self.catalogue.store_url(e), "store_version": str(self.stores[e.name].version), "n_start_times": len(self.starts[e.name]), "cadence_minutes": self.cadence_min[e.name], "fingerprint": data_fingerprint(self.stores[e.name]), "source_fingerprint": source_fingerprint(self.stores[e.name])} for e in self.events},
        })
        learned, records = self.run_splits() if self.plan.learned else ({}, [])  # first: a separate `--stage baselines` may run meanwhile
        tables = self.run_baselines()
        tables.update(learned)
        counts = self.results(tables)
        summary = summarise(counts, self.plan, {e.name: e.resolution_class for e in self.events})
        wall = round(time.perf_counter() - t0, 1)
        # a rerun that reuses folds and tables takes seconds: report the first complete run's time too
        earlier = [r["wall_seconds"] for r in self.ledger.records() if r.get("event") == "summary" and r.get("plan_hash") == self.hash]
        summary.update(plan_hash=self.hash, splits=records, wall_seconds=wall, first_run_wall_seconds=earlier[0] if earlier else wall)
        self.publish(counts, summary)
        return summary

    def publish(self, counts: xr.Dataset, summary: dict[str, Any]) -> None:
        """Write the outputs of this run's folder and record them in its ledger."""
        outputs = write_outputs(self.out, counts, summary)
        self.ledger.append({"event": "summary", "plan_hash": self.hash, "time": now_iso(), "wall_seconds": summary["wall_seconds"], "outputs": outputs})


def paired_bootstrap(counts: xr.Dataset, events: list[str], minutes: list[float], n: int, seed: int, a: str | Sequence[str], b: str) -> dict[str, Any]:
    """Percentile intervals of CSI/MCC of methods ``a`` (one or several), ``b`` and of each
    ``a - b``, resampling events; every method is scored on the same resampled events."""
    methods = [a] if isinstance(a, str) else list(a)
    rng = np.random.default_rng(seed)
    per_event = [pool_by_minutes(counts, minutes, [e]) for e in events]
    stack = {c: np.stack([p[c].sel({"method": [*methods, b]}).values for p in per_event]) for c in COUNTS}  # (E, M + 1, L, T)
    from nowcast.metrics.categorical import scores_from_counts

    draws = {"csi": [], "mcc": []}
    for _ in range(n):
        idx = rng.integers(0, len(events), len(events))
        s = scores_from_counts(*(stack[c][idx].sum(0) for c in COUNTS))
        for k in draws:
            draws[k].append(s[k])
    out = {}
    for k, v in draws.items():
        arr = np.asarray(v)  # (n, M + 1, L, T)
        series = [(m, arr[:, i]) for i, m in enumerate(methods)] + [(b, arr[:, -1])]
        series += [(f"{m}-{b}", arr[:, i] - arr[:, -1]) for i, m in enumerate(methods)]
        for label, x in series:
            out[f"{k}:{label}"] = {"lo": np.nanpercentile(x, 2.5, axis=0).tolist(), "hi": np.nanpercentile(x, 97.5, axis=0).tolist()}
    return out


def method_scores(s: xr.Dataset, keys: tuple[str, ...] = ("csi", "mcc", "pod", "far", "bias")) -> dict[str, dict[str, list]]:
    """Scores (method, lead_time, threshold) as ``{method: {score: nested lists}}``, 4 decimals."""
    return {str(m): {k: s[k].sel({"method": m}).values.round(4).tolist() for k in keys} for m in s["method"].values}


def summarise(counts: xr.Dataset, plan: EventPlan, classes: dict[str, str]) -> dict[str, Any]:
    """Pooled scores per class, intervals and the paired difference ConvLSTM - S-PROG."""
    minutes = list(plan.scores.report_minutes)
    out: dict[str, Any] = {"plan": plan.name, "minutes": minutes, "thresholds": list(plan.scores.thresholds), "classes": {}}
    for c in plan.classes:
        evs = sorted(e for e, k in classes.items() if k == c and e in counts["event"].values)
        pooled = pool_by_minutes(counts, minutes, evs)
        s = scores(pooled)
        entry: dict[str, Any] = {"events": evs, "scores": {}}
        for m, row in method_scores(s).items():
            if is_repetition_method(m):  # per-repetition counts: a spread, not a method of the tables
                entry.setdefault("repetitions", {})[m] = row
            else:
                entry["scores"][m] = row
        methods = [m for m in s["method"].values if not is_repetition_method(str(m))]
        paired = [m for m in [LEARNED, *plan.baseline_options] if m in methods]  # each paired with S-PROG
        if "sprog" in methods and paired:
            entry["intervals"] = paired_bootstrap(counts, evs, minutes, plan.scores.bootstrap, plan.seed, paired, "sprog")
        out["classes"][c] = entry
    if not plan.learned:
        out["learned"] = False
    return out


#: display names of the methods in the tables
METHOD_NAMES = {"persistence": "persistence", "extrapolation": "LK extrapolation", "sprog": "S-PROG", LEARNED: "ConvLSTM"}


def _cell(v: float | None, ci: dict[str, Any] | None, li: int, ti: int) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:.3f} [{ci['lo'][li][ti]:.3f}, {ci['hi'][li][ti]:.3f}]" if ci else f"{v:.3f}"


def class_tables(summary: dict[str, Any], cls: str, shown: list[float] | None = None) -> list[str]:
    """Markdown tables of one class: CSI and MCC per threshold, one row per method (with
    intervals), the paired difference ConvLSTM - S-PROG and the relative difference.
    ``shown``: lead times (minutes) to show (default all of the summary's)."""
    entry = summary["classes"][cls]
    minutes = summary["minutes"]
    cols = [minutes.index(m) for m in (shown or minutes) if m in minutes]
    intervals = entry.get("intervals", {})
    lines: list[str] = []
    for metric in ("csi", "mcc"):
        for ti, thr in enumerate(summary["thresholds"]):
            events = "held-out events" if summary.get("learned", True) else "events"
            lines += [f"{metric.upper()} at {thr:g} mm/h, pooled over the {len(entry['events'])} {events} (95 % bootstrap interval over events):", ""]
            lines += ["| method | " + " | ".join(f"{minutes[c]:g} min" for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
            for method, sc in entry["scores"].items():
                ci = intervals.get(f"{metric}:{method}")
                lines.append(f"| {METHOD_NAMES.get(method, method)} | " + " | ".join(_cell(sc[metric][c][ti], ci, c, ti) for c in cols) + " |")
            for method in entry["scores"]:
                d = intervals.get(f"{metric}:{method}-sprog")
                if not d:
                    continue
                name = METHOD_NAMES.get(method, method)
                a, b = entry["scores"][method][metric], entry["scores"]["sprog"][metric]
                lines.append(f"| {name} - S-PROG | " + " | ".join(f"{a[c][ti] - b[c][ti]:+.3f} [{d['lo'][c][ti]:+.3f}, {d['hi'][c][ti]:+.3f}]" for c in cols) + " |")
                rel = [(a[c][ti] / b[c][ti] - 1.0) * 100 if b[c][ti] else float("nan") for c in cols]
                lines.append(f"| {name} vs S-PROG | " + " | ".join(f"{r:+.1f} %" for r in rel) + " |")
            lines.append("")
    return lines + repetition_table(summary, cls, cols)


def repetition_table(summary: dict[str, Any], cls: str, cols: list[int]) -> list[str]:
    """ConvLSTM - S-PROG in each repetition alone (rows metric x threshold x repetition), or
    nothing for a single-repetition plan. Columns: the lead-time indices ``cols``."""
    entry = summary["classes"][cls]
    reps = entry.get("repetitions", {})
    if not reps or "sprog" not in entry["scores"]:
        return []
    minutes = summary["minutes"]
    lines = [f"ConvLSTM - S-PROG in each of the {len(reps)} repetitions alone (every event held out once per repetition, different folds and validation events):", ""]
    lines += ["| score | repetition | " + " | ".join(f"{minutes[c]:g} min" for c in cols) + " |", "|---" * (len(cols) + 2) + "|"]
    base = entry["scores"]["sprog"]
    for metric in ("csi", "mcc"):
        for ti, thr in enumerate(summary["thresholds"]):
            for name in sorted(reps):
                lines.append(f"| {metric.upper()} {thr:g} mm/h | {name.removeprefix(LEARNED + '-')} | " + " | ".join(f"{reps[name][metric][c][ti] - base[metric][c][ti]:+.3f}" for c in cols) + " |")
    return lines + [""]


def event_table(counts: xr.Dataset, events: list[str], method: str = LEARNED, minutes: tuple[float, ...] = (5, 30, 60)) -> list[str]:
    """Markdown table, one row per event and one for all of them pooled: S-PROG's CSI at the
    lowest threshold, ``method`` - S-PROG in CSI at every threshold, and ``method``'s forecast
    area at the lowest threshold relative to S-PROG's (hits + false alarms), at ``minutes``;
    "-" where an event has no such lead or no observed exceedance. Shows which events carry a
    pooled difference."""
    thresholds = [float(t) for t in counts["threshold"].values]
    at = " / ".join(f"{m:g}" for m in minutes) + " min"
    name = METHOD_NAMES.get(method, method)
    head = [f"S-PROG, {thresholds[0]:g} mm/h, {at}"] + [f"{name} - S-PROG, {t:g} mm/h, {at}" for t in thresholds]
    head.append(f"{name} area / S-PROG's, {thresholds[0]:g} mm/h, {at}")
    lines = ["| event | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]

    def fmt(v: float, signed: bool) -> str:
        return "-" if not np.isfinite(v) else (f"{v:+.3f}" if signed else f"{v:.3f}")

    for label, group in [(e, [e]) for e in events] + [(f"all {len(events)} pooled", events)]:
        pooled = pool_by_minutes(counts, list(minutes), group)
        csi = scores(pooled)["csi"]
        base, other = csi.sel({"method": "sprog"}).values, csi.sel({"method": method}).values  # (lead, threshold)
        area = {m: (pooled["hits"] + pooled["false_alarms"]).sel({"method": m}).values[:, 0].astype(float) for m in ("sprog", method)}
        # a method pooled over repetitions holds each event once per repetition: compare per forecast
        n = {m: (pooled["hits"] + pooled["misses"]).sel({"method": m}).values[:, 0].astype(float) for m in ("sprog", method)}
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = (area[method] / n[method]) / (area["sprog"] / n["sprog"])
        cells = [" / ".join(fmt(base[i, 0], False) for i in range(len(minutes)))]
        cells += [" / ".join(fmt(other[i, j] - base[i, j], True) for i in range(len(minutes))) for j in range(len(thresholds))]
        cells.append(" / ".join(fmt(r, False) for r in ratio))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(summary: dict[str, Any]) -> str:
    """The report: every class's tables at every lead time of the plan."""
    lines = [f"# Event-blocked DAP: {summary['plan']}", "", f"plan hash `{summary.get('plan_hash', '')[:16]}`", ""]
    for c, entry in summary["classes"].items():
        held = "held out once each" if summary.get("learned", True) else "(no model trained: baselines only)"
        lines += [f"## Class {c}: {len(entry['events'])} events {held}", "", ", ".join(entry["events"]), ""]
        lines += class_tables(summary, c)
    return "\n".join(lines)


@contextmanager
def lead_time_grid(path: Path, rows: int, cols: int, size: tuple[float, float]) -> Iterator[np.ndarray]:
    """A ``rows`` x ``cols`` grid of axes (numpy array) against lead time in minutes, each
    ``size`` inches; on exit the first column gets the legend and the figure is saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    try:
        yield axes
        for ax in axes.flat:
            ax.set_xlabel("lead time (min)")
            ax.grid(alpha=0.3)
        for ax in axes[:, 0]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def plot(summary: dict[str, Any], path: Path) -> None:
    """CSI and MCC against lead time per class and threshold, with the ConvLSTM's interval."""
    classes = list(summary["classes"])
    thr = summary["thresholds"]
    x = summary["minutes"]
    with lead_time_grid(path, len(classes), 2 * len(thr), (4.2, 3.4)) as axes:
        for ci, c in enumerate(classes):
            entry = summary["classes"][c]
            for mi, metric in enumerate(("csi", "mcc")):
                for ti, t in enumerate(thr):
                    ax = axes[ci, mi * len(thr) + ti]
                    for method, sc in entry["scores"].items():
                        y = [sc[metric][li][ti] for li in range(len(x))]
                        ax.plot(x, y, marker="o", ms=3, label=method, lw=2 if method == LEARNED else 1.2)
                        ci_ = entry.get("intervals", {}).get(f"{metric}:{method}")
                        if ci_:
                            ax.fill_between(x, [v[ti] for v in ci_["lo"]], [v[ti] for v in ci_["hi"]], alpha=0.15)
                    ax.set_title(f"{c}: {metric.upper()} >= {t:g} mm/h", fontsize=9)


def write_outputs(out: Path, counts: xr.Dataset, summary: dict[str, Any],
                  report: Callable[[dict[str, Any]], str] = markdown,
                  figure: tuple[str, Callable[[dict[str, Any], Path], None]] = ("skill.png", plot)) -> list[str]:
    """Write a run folder's outputs: ``results.nc`` (atomically), ``results.json``, ``report.md``
    (``report(summary)``) and the figure (``figure``: file name, drawing function). Returns their names."""
    from nowcast.durability import atomic_path

    with atomic_path(out / "results.nc") as tmp:  # readers holding the old file keep a valid one
        counts.to_netcdf(tmp)
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=float))
    (out / "report.md").write_text(report(summary))
    name, draw = figure
    draw(summary, out / name)
    return ["results.nc", "results.json", "report.md", name]


def add_run_arguments(p: argparse.ArgumentParser, subdir: str) -> None:
    """The options of a tool that reads a finished plan run and writes ``<run>/<subdir>``."""
    p.add_argument("--plan", type=Path, default=Path("plans/real-events-kfold-sprog-repeated.toml"))
    p.add_argument("--run", type=Path, default=None, help="the plan's run folder (default results/<plan name>)")
    p.add_argument("--out", type=Path, default=None, help=f"default <run>/{subdir}")
    p.add_argument("--no-progress", action="store_true")


def plan_run_out(args: argparse.Namespace, subdir: str) -> tuple[EventPlan, Path, Path]:
    """(plan, run folder, output folder) from the options of :func:`add_run_arguments`; sets up logging."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plan = load_config(EventPlan, args.plan, [])
    run = args.run or Path("results") / plan.name
    return plan, run, args.out or run / subdir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.dap.events", description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", type=Path, default=Path("plans/real-events-kfold-sprog.toml"))
    p.add_argument("--out", type=Path, default=None, help="default results/<plan name>")
    p.add_argument("--device", default="cpu")
    p.add_argument("--stage", choices=["all", "baselines"], default="all")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plan = load_config(EventPlan, args.plan, args.overrides)
    runner = EventRunner(plan, args.out or Path("results") / plan.name, device=args.device, progress=not args.no_progress)
    if args.stage == "baselines":
        runner.run_baselines()
        return 0
    summary = runner.run()
    sys.stdout.write(markdown(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
