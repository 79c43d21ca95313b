"""The catalogue of real radar events: one observation store per event, by resolution class.

A catalogue (``configs/events-real.toml``) lists every event usable as nowcasting material:
its source files (relative to ``data_root``), its resolution class ("2km" composites, "240m"
X-band), how it is brought onto its store grid (block-mean ``downsample``, optional ``grid``
crop) and its cadence. :func:`build_stores` imports each event with ``nowcast import``'s own
function (idempotent: frames already stored are skipped), so a store can be rebuilt at any time
from ``../shared/data``. Events, not stores of mixed days, are the blocks of the event-level
DAP plans (:mod:`training.dap.events`): an event is held out whole, never split.

    python -m training.events build [--catalogue configs/events-real.toml] [--only NAME ...]
    python -m training.events list
    python -m training.events guides --config configs/train-real-events-sprog.toml [--workers 2]
    python -m training.events fingerprints [--out FILE.json] [--compare OTHER.json] [--store-root DIR]

``guides`` fills the content-keyed guide cache of a training recipe for every event, in
parallel worker processes (one window per task, largest grids first): every
``window_stride``-th stored time, which covers the windows training selects and the start times
the event DAP scores at the same stride, so one warm-up serves the shipped model, every fold and
the folds' scoring.

``fingerprints`` writes each event store's content and source fingerprints with the machine
they were computed on (CPU, NumPy SIMD level); ``--compare`` sets them beside another machine's
file and says, per event, whether the stored values, or only the source files, agree.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nowcast.config import load_config

if TYPE_CHECKING:
    from nowcast.models.network import ModelConfig
    from nowcast.store import ObservationStore, ObservationStoreLike

log = logging.getLogger(__name__)

DEFAULT_CATALOGUE = Path("configs/events-real.toml")


class EventSpec(BaseModel):
    """One event: its source files and how they become its observation store."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="unique event name (also the store's folder name)")
    resolution_class: str = Field(alias="class", description="resolution class, e.g. '2km' or '240m'")
    paths: list[str] = Field(min_length=1, description="files or folders, relative to data_root")
    downsample: int = Field(1, ge=1, description="block-mean downsampling factor after reading")
    grid: str | None = Field(None, description="target grid 'CRS,xmin,ymin,xmax,ymax,resolution' (crop); None = native")
    cadence: str = Field("5min", description="time step of the event's frames")

    @field_validator("cadence")
    @classmethod
    def _cadence(cls, v: str) -> str:
        try:
            td = pd.Timedelta(v)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"cadence {v!r} is not a duration (e.g. '5min')") from exc
        if td <= pd.Timedelta(0):
            raise ValueError(f"cadence must be positive, got {v!r}")
        return v


class Catalogue(BaseModel):
    """A whole catalogue file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_root: str = Field("../shared/data/radar", description="folder the event paths are relative to")
    store_root: str = Field("var/real", description="folder of the stores: <store_root>/<class>/<name>.zarr")
    event: list[EventSpec] = Field(min_length=1)

    @field_validator("event")
    @classmethod
    def _unique(cls, v: list[EventSpec]) -> list[EventSpec]:
        names = [e.name for e in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate event names: {dup}")
        return v

    def store_url(self, event: EventSpec) -> str:
        return str(Path(self.store_root) / event.resolution_class / f"{event.name}.zarr")

    def get(self, name: str) -> EventSpec:
        for e in self.event:
            if e.name == name:
                return e
        raise KeyError(f"unknown event {name!r}; valid: {', '.join(e.name for e in self.event)}")

    def sources(self, event: EventSpec) -> list[Path]:
        return [Path(self.data_root) / p for p in event.paths]


def load_catalogue(path: str | Path = DEFAULT_CATALOGUE, overrides: list[str] | None = None) -> Catalogue:
    """Read and validate a catalogue file (raises ``nowcast.config.ConfigError``)."""
    return load_config(Catalogue, path, overrides)


def build_stores(catalogue: Catalogue, only: list[str] | None = None, progress: bool = True) -> dict[str, dict[str, int]]:
    """Import every event (or those in ``only``) into its store; returns counts per event.

    Raises ``FileNotFoundError`` naming the folder when an event's source data are absent.
    """
    from nowcast.bulk_import import expand_paths, import_files, parse_grid

    out: dict[str, dict[str, int]] = {}
    events = [catalogue.get(n) for n in only] if only else list(catalogue.event)
    for ev in events:
        files = expand_paths(catalogue.sources(ev))
        url = catalogue.store_url(ev)
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        log.info("%s: %d files -> %s", ev.name, len(files), url)
        summary = import_files(files, url, grid=parse_grid(ev.grid or "native"), downsample=ev.downsample, cadence=ev.cadence, progress=progress)
        out[ev.name] = {"written": summary.written, "skipped": summary.skipped, "failed": summary.failed}
        if summary.failed:
            log.warning("%s: %d files failed: %s", ev.name, summary.failed, "; ".join(list(summary.reasons.values())[:3]))
    return out


def open_event_store(catalogue: Catalogue, event: EventSpec) -> ObservationStore:
    """The event's store, read-only; ``FileNotFoundError`` saying how to build it when absent."""
    from nowcast.store import ObservationStore

    url = catalogue.store_url(event)
    if not Path(url).exists():
        raise FileNotFoundError(f"{url}: store of event {event.name} missing; build it with `python -m training.events build`")
    return ObservationStore.open(url)


def training_parts(
    stores: dict[str, ObservationStoreLike], train: list[str], validation: list[str]
) -> list[tuple[ObservationStoreLike, pd.DatetimeIndex, pd.DatetimeIndex]]:
    """``fit_many`` parts: every stored time of the training events as training windows, of the
    validation events as validation windows (whole events, never split)."""
    parts = []
    for name in train:
        parts.append((stores[name], stores[name].times(), pd.DatetimeIndex([])))
    for name in validation:
        parts.append((stores[name], pd.DatetimeIndex([]), stores[name].times()))
    return parts


_WORKER_STORES: dict[str, ObservationStore] = {}  # per worker process: stores opened once


def _warm_window(task: tuple[str, str, ModelConfig, str, pd.Timestamp]) -> tuple[str, float]:
    """Worker: the cached guide of the window ending at the task's time (threads: the parent's
    OMP_NUM_THREADS). Dry windows too: the event DAP scores every start time. Returns
    (event, seconds)."""
    import time

    import numpy as np

    from nowcast.models.convlstm import cached_guide
    from nowcast.store import ObservationStore
    from training.dataset import window_history

    name, url, cfg, cache, t = task
    t0 = time.perf_counter()
    store = _WORKER_STORES.get(url)
    if store is None:
        store = _WORKER_STORES[url] = ObservationStore.open(url)
    rain, light = window_history(store, t, cfg)
    if np.isfinite(rain[-1]).any():
        cached_guide(rain, light, cfg, Path(cache))
    return name, time.perf_counter() - t0


def warm_guides(catalogue: Catalogue, train_config: str | Path, workers: int = 2, only: list[str] | None = None,
                classes: list[str] | None = None, progress: bool = True) -> dict[str, tuple[int, float]]:
    """Fill the guide cache of the recipe ``train_config`` for the catalogue's events.

    Every ``window_stride``-th stored time of each event (the training windows before the
    wetness filter, and the start times the event DAP scores at the same stride) gets its guide.
    Each window is one task for the ``workers`` processes, largest grids first, so one large event
    does not bound the wall time; the cache's atomic writes make concurrent fills safe.
    Returns ``{event: (windows, worker seconds)}``.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    from nowcast.config import read_mapping
    from training.config import parse_options
    from training.dataset import window_ends

    recipe = read_mapping(train_config)
    options = {k: v for k, v in recipe.items() if k in ("model", "train")}
    # where training reads them: [train] cache_dir, else <out_dir>/cache (training.api)
    cache = options.get("train", {}).get("cache_dir") or str(Path(recipe.get("out_dir", "runs/train")) / "cache")
    if options.get("model", {}).get("advection", "residual") == "none":
        raise ValueError(f"{train_config}: the model has no guide (advection = 'none')")
    cfg, opts = parse_options(options)
    events = [e for e in catalogue.event if (only is None or e.name in only) and (classes is None or e.resolution_class in classes)]
    missing = [e.name for e in events if not Path(catalogue.store_url(e)).exists()]
    if missing:
        raise FileNotFoundError(f"stores missing for {missing}; build them with `python -m training.events build`")

    tasks: list[tuple[int, tuple[str, str, ModelConfig, str, pd.Timestamp]]] = []
    for e in events:
        store = open_event_store(catalogue, e)
        cells = int(store.grid.shape[0] * store.grid.shape[1])
        tasks += [(cells, (e.name, catalogue.store_url(e), cfg, cache, t)) for t in window_ends(store.times(), opts.window_stride)]
    tasks.sort(key=lambda t: t[0], reverse=True)
    out: dict[str, tuple[int, float]] = {}
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool, tqdm(total=len(tasks), desc="guides", unit="window", disable=not progress) as bar:
        for fut in as_completed([pool.submit(_warm_window, t) for _, t in tasks]):
            name, seconds = fut.result()
            n0, s0 = out.get(name, (0, 0.0))
            out[name] = (n0 + 1, s0 + seconds)
            bar.update(1)
    for name, (n, seconds) in sorted(out.items()):
        log.info("guides of %s: %d windows, %.0f worker seconds", name, n, seconds)
    return out


def store_fingerprints(catalogue: Catalogue, only: list[str] | None = None) -> dict:
    """Content and source fingerprints of every built event store, with the machine's description."""
    import numpy as np

    from nowcast.provenance import code_version_string, data_fingerprint, source_fingerprint
    from training.model_card import cpu_model

    try:  # the SIMD extensions NumPy dispatches to on this CPU (no public API lists them)
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        features = {}
    events: dict[str, dict] = {}
    for ev in catalogue.event:
        if only and ev.name not in only:
            continue
        if not Path(catalogue.store_url(ev)).exists():
            log.warning("%s: store not built; skipped", ev.name)
            continue
        store = open_event_store(catalogue, ev)
        events[ev.name] = {
            "store": catalogue.store_url(ev),
            "frames": len(store.times()),
            "imported_files": len(store.imported_files()),
            "fingerprint": data_fingerprint(store),
            "source_fingerprint": source_fingerprint(store),
        }
    machine = {"cpu": cpu_model(), "numpy": np.__version__, "simd": sorted(k for k, on in features.items() if on and k.startswith(("AVX", "FMA", "X86_V")))}
    return {"machine": machine, "code_version": code_version_string(), "events": events}


def compare_fingerprints(mine: dict, other: dict) -> dict[str, str]:
    """Per event of both files: "identical", "same sources, other stored values", "other sources"
    or "no source record" (a store built before imports kept one)."""
    out: dict[str, str] = {}
    for name in sorted(set(mine["events"]) & set(other["events"])):
        a, b = mine["events"][name], other["events"][name]
        if a["fingerprint"] == b["fingerprint"]:
            out[name] = "identical"
        elif not a.get("source_fingerprint") or not b.get("source_fingerprint"):
            out[name] = "no source record"
        elif a["source_fingerprint"] == b["source_fingerprint"]:
            out[name] = "same sources, other stored values"
        else:
            out[name] = "other sources"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.events", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["build", "list", "guides", "fingerprints"])
    p.add_argument("--out", type=Path, default=None, help="fingerprints: write them to this JSON file")
    p.add_argument("--compare", type=Path, default=None, help="fingerprints: another machine's file to compare with")
    p.add_argument("--config", type=Path, default=Path("configs/train-real-events-sprog.toml"), help="guides: the training recipe")
    p.add_argument("--workers", type=int, default=2, help="guides: worker processes")
    p.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    p.add_argument("--only", nargs="*", default=None, help="event names (default: all)")
    p.add_argument("--store-root", type=Path, default=None, help="build/fingerprints/guides: the stores under this folder instead of the catalogue's store_root (e.g. a scratch rebuild)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cat = load_catalogue(args.catalogue)
    if args.store_root is not None:
        cat = cat.model_copy(update={"store_root": str(args.store_root)})
    if args.action == "list":
        for ev in cat.event:
            sys.stdout.write(f"{ev.name:28s} {ev.resolution_class:5s} {ev.cadence:6s} {cat.store_url(ev)}\n")
        return 0
    if args.action == "fingerprints":
        import json

        found = store_fingerprints(cat, args.only)
        verdicts = compare_fingerprints(found, json.loads(args.compare.read_text())) if args.compare else {}
        if args.compare:
            found["comparison"] = {"with": str(args.compare), "verdicts": verdicts}
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(found, indent=1) + "\n")
        for name, e in found["events"].items():
            extra = f"  {verdicts[name]}" if name in verdicts else ""
            sys.stdout.write(f"{name:28s} content {e['fingerprint']}  sources {e['source_fingerprint'] or '-':16s}{extra}\n")
        return 0
    if args.action == "guides":
        done = warm_guides(cat, args.config, args.workers, args.only, progress=not args.no_progress)
        for name, (n, seconds) in sorted(done.items()):
            sys.stdout.write(f"{name}: {n} windows, {seconds:.0f} worker seconds\n")
        return 0
    counts = build_stores(cat, args.only, progress=not args.no_progress)
    failed = sum(c["failed"] for c in counts.values())
    for name, c in counts.items():
        sys.stdout.write(f"{name}: {c['written']} written, {c['skipped']} skipped, {c['failed']} failed\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
