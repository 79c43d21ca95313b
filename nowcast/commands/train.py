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

from nowcast.cli import CommandError
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


def run(args: argparse.Namespace) -> int:
    from training.config import TrainConfig

    try:
        cfg = load_config(TrainConfig, args.config, args.overrides)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    if cfg.data is None:
        raise CommandError(f"{args.config}: the [data] table (store, train and val periods) is required")
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
    try:
        ckpt = fit(cfg.options(), store, train_times, val_times, seed=cfg.seed, device=args.device, out_dir=out_dir, resume=args.resume)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    print(ckpt)
    return 0
