"""Skill on whole held-out real events: ConvLSTM vs extrapolation, S-PROG and persistence.

Scores every forecast start time of the ``[data].test`` periods of a training config (whole
events never seen in training): CSI and MCC at 1 and 5 mm/h for leads 5/15/30/45/60/75 min,
from contingency tables pooled over all start times, NaN (no coverage, missing frames)
masked. Prints a table and writes JSON.

    python benchmarks/skill_real.py --config configs/train-real.toml \
        [--checkpoint runs/convlstm-real/best.pt] [--models persistence,extrapolation,sprog] \
        [--out benchmarks/skill_real.json]

The store is the config's ``[data].store`` (or ``--store``); see docs/training.md for how to
build it from ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from nowcast import dims
from nowcast.config import load_config
from nowcast.metrics import ContingencyTable
from nowcast.models import create_nowcaster
from nowcast.store import ObservationStore
from training.config import TrainConfig

log = logging.getLogger("skill_real")

THRESHOLDS = (1.0, 5.0)
REPORT_LEADS_MIN = (5, 15, 30, 45, 60, 75)
N_LEADS = 15
#: reported in the issue (pysteps LK extrapolation, CSI at 1 mm/h, 30 and 60 min)
REFERENCE = {"lk_csi1_30": 0.465, "lk_csi1_60": 0.328, "plain_convlstm": (0.409, 0.284), "residual_convlstm": (0.469, 0.318)}


def start_times(store: ObservationStore, cfg: TrainConfig) -> pd.DatetimeIndex:
    """Every stored frame in the test periods (each is a forecast start time)."""
    assert cfg.data is not None
    if not cfg.data.test:
        raise SystemExit("the config has no [data].test periods (held-out events) to score")
    return cfg.data.select(store.times(), "test")


def score(model, store: ObservationStore, times: pd.DatetimeIndex) -> tuple[ContingencyTable, float]:  # noqa: ANN001
    """Pooled contingency table (lead, threshold) of ``model`` over ``times``; and seconds."""
    table = ContingencyTable.init(THRESHOLDS, N_LEADS)
    leads = [store.cadence * k for k in range(1, N_LEADS + 1)]
    t0 = time.perf_counter()
    for t in times:
        history = store.window(t, model.n_inputs)
        observed = store.window(t + store.cadence * N_LEADS, N_LEADS)[dims.RAIN_RATE].values
        fc = model.forecast(history, leads)[dims.RAIN_RATE].values
        table.accumulate(fc, observed)
    return table, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=Path("configs/train-real.toml"))
    p.add_argument("--store", default=None, help="override [data].store")
    p.add_argument("--checkpoint", type=Path, action="append", default=[], help="ConvLSTM checkpoint(s) to score")
    p.add_argument("--models", default="persistence,extrapolation,sprog")
    p.add_argument("--out", type=Path, default=Path("benchmarks/skill_real.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    cfg = load_config(TrainConfig, args.config)
    assert cfg.data is not None
    store = ObservationStore.open(args.store or cfg.data.store)
    times = start_times(store, cfg)
    log.info("%d start times in %d held-out events", len(times), len(cfg.data.test))
    models = {name: create_nowcaster(name) for name in args.models.split(",") if name}
    for ck in args.checkpoint:
        models[f"convlstm:{ck.parent.name}"] = create_nowcaster("convlstm", checkpoint=ck, device="auto")

    results: dict[str, dict] = {}
    for name, model in models.items():
        table, seconds = score(model, store, times)
        s = table.compute()
        results[name] = {
            "seconds": round(seconds, 2),
            "scores": {
                f"{metric}@{thr:g}": {str(m): float(s[metric][m // 5 - 1, i]) for m in REPORT_LEADS_MIN}
                for metric in ("csi", "mcc")
                for i, thr in enumerate(THRESHOLDS)
            },
        }
        log.info("%s: %.1f s", name, seconds)

    header = "| model | score | " + " | ".join(f"{m} min" for m in REPORT_LEADS_MIN) + " |"
    lines = [header, "|" + "---|" * (len(REPORT_LEADS_MIN) + 2)]
    for name, r in results.items():
        for key, by_lead in r["scores"].items():
            lines.append(f"| {name} | {key} | " + " | ".join(f"{by_lead[str(m)]:.3f}" for m in REPORT_LEADS_MIN) + " |")
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"store": store.url, "store_version": store.version, "n_start_times": len(times), "test_periods": cfg.data.test, "reference": REFERENCE, "results": results},
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
