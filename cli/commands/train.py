"""``nowcast train``: train a ConvLSTM nowcaster from an observation store.

Reads one training configuration (TOML/YAML; schema :class:`training.config.TrainConfig`,
documented in docs/training.md), validated before any work starts; ``--set key=value``
overrides single values (dotted keys, e.g. ``--set train.epochs=3``). Prints the path of the
best checkpoint. Runs under ``torchrun`` for DDP (every rank runs the same command).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from cli import CommandError
from nowcast.config import ConfigError, load_config

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, help="training configuration file (.toml/.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override one value (repeatable)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto", help="where to train (default: auto)")
    p.add_argument("--resume", type=Path, default=None, metavar="CKPT", help="continue from a last.pt checkpoint")
    p.add_argument("--out-dir", type=Path, default=None, help="output folder (default: out_dir of the config)")


def fill_synthetic(url: str, size: int, seed: int, start: pd.Timestamp, end: pd.Timestamp, cadence: pd.Timedelta):  # noqa: ANN201
    """Create (or complete) a store at ``url`` with synthetic frames from ``start`` to ``end``."""
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore

    src = SyntheticRadar(SyntheticRadar.default_grid(nx=size, ny=size), seed=seed, cadence=cadence)
    store = ObservationStore.open_or_create(url, src.grid, cadence=cadence)
    for t in pd.date_range(start, end, freq=cadence):
        if not store.has(t):
            f = src.frame(t)
            store.append(f["rain_rate"], lightning=f["lightning"], source="synthetic")
    return store


def run_events(cfg, args: argparse.Namespace) -> int:  # noqa: ANN001
    """Train on whole events of a catalogue (``[events]``); writes the checkpoint and its model card."""
    import json
    import time

    from training.api import fit_many
    from training.dap.events import choose_validation
    from training.events import load_catalogue, open_event_store, training_parts

    ev = cfg.events
    try:
        cat = load_catalogue(ev.catalogue)
        events = [e for e in cat.event if e.resolution_class in ev.classes and e.name not in ev.exclude]
        stores = {e.name: open_event_store(cat, e) for e in events}
        val = list(ev.validation) if ev.validation is not None else choose_validation(events, ev.classes, ev.validation_events, cfg.seed)
    except (ConfigError, FileNotFoundError, ValueError, KeyError) as exc:
        raise CommandError(str(exc)) from exc
    unknown = sorted(set(val) - set(stores))
    if unknown:
        raise CommandError(f"validation events {unknown} are not in the catalogue's {ev.classes} events")
    train = [n for n in stores if n not in val]
    out_dir = args.out_dir or Path(cfg.out_dir)
    t0 = time.perf_counter()
    try:
        ckpt = fit_many(cfg.options(), training_parts(stores, train, val), seed=cfg.seed, device=args.device, out_dir=out_dir, resume=args.resume)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    seconds = time.perf_counter() - t0
    from training.model_card import write_model_card

    card = write_model_card(ckpt, config_path=args.config, train_events=train, validation_events=val, stores=stores, train_seconds=seconds, device=args.device)
    log.info("model card: %s", card)
    print(ckpt)
    print(json.dumps({"train_seconds": round(seconds, 1), "card": str(card)}))
    return 0


def run(args: argparse.Namespace) -> int:
    from training.config import TrainConfig

    try:
        cfg = load_config(TrainConfig, args.config, args.overrides)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    if cfg.events is not None:
        return run_events(cfg, args)
    if cfg.data is None:
        raise CommandError(f"{args.config}: a [data] table (store, train and val periods) or an [events] table (catalogue) is required")
    from nowcast.store import ObservationStore, StoreError
    from training.api import fit

    data = cfg.data
    cadence = pd.Timedelta(minutes=cfg.model.cadence_minutes)
    try:
        if data.synthetic_seed is not None:
            periods = [p for p in data.train + data.val + data.test]
            start = min(pd.Timestamp(a) for a, _ in periods) - cfg.model.frames_needed * cadence
            end = max(pd.Timestamp(b) for _, b in periods) + cfg.model.n_leads * cadence
            store = fill_synthetic(data.store, data.synthetic_size, data.synthetic_seed, start, end, cadence)
        else:
            store = ObservationStore.open(data.store, mode="r", storage_options=data.storage_options)
    except (StoreError, FileNotFoundError) as exc:
        raise CommandError(f"cannot open store {data.store!r}: {exc}") from exc
    times = store.times()
    train_times, val_times = data.select(times, "train"), data.select(times, "val")
    out_dir = args.out_dir or Path(cfg.out_dir)
    import os
    import time

    t0 = time.perf_counter()
    try:
        ckpt = fit(cfg.options(), store, train_times, val_times, seed=cfg.seed, device=args.device, out_dir=out_dir, resume=args.resume)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    seconds = time.perf_counter() - t0
    if ckpt.is_file() and os.environ.get("RANK", "0") == "0":  # one card, written by rank 0
        from training.model_card import write_store_model_card

        card = write_store_model_card(ckpt, config_path=args.config, train_seconds=seconds, device=args.device, load_average=list(os.getloadavg()))
        log.info("model card: %s (fit %.0f s)", card, seconds)
    print(ckpt)
    return 0
