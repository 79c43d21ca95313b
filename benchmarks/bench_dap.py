"""Benchmark of the DAP evaluation harness: a full plan on the shared real data, 1 vs 2 dask workers.

    python benchmarks/bench_dap.py                                  # plans/real-events.toml, workers 1 and 2
    python benchmarks/bench_dap.py --skip-learned --repetitions 1 --stride 3   # classical methods, quicker
    python benchmarks/bench_dap.py --make-synthetic var/synthetic.zarr   # the store of plans/synthetic-smoke.toml

Imports ../shared/data/radar/unica-xband into var/real.zarr first when that store is missing.
Prints a table and writes benchmarks/out/bench_dap.json. Also checks that the scores are
identical whatever the number of workers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ensure_real_store(store: Path) -> bool:
    if store.exists():
        return True
    data = (
        Path(os.environ.get("NOWCAST_SHARED_DATA", ROOT.parent / "shared" / "data"))
        / "radar"
        / "unica-xband"
    )
    if not data.is_dir():
        print(f"real data absent ({data}); nothing to benchmark")
        return False
    print(f"importing {data} into {store} ...", flush=True)
    cmd = [
        sys.executable,
        "-m",
        "cli",
        "import",
        str(data),
        "--store",
        str(store),
        "--downsample",
        "4",
        "--no-progress",
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", type=Path, default=ROOT / "plans" / "real-events.toml")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repetitions", type=int, help="override splits.repetitions")
    ap.add_argument(
        "--stride", type=int, help="override splits.stride (evaluate every n-th start time)"
    )
    ap.add_argument("--skip-learned", action="store_true", help="drop methods with train = true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument(
        "--make-synthetic",
        type=Path,
        metavar="STORE",
        help="only build the synthetic demo store and exit",
    )
    args = ap.parse_args(argv)

    if args.make_synthetic:
        from training.dap.synthetic import build_synthetic_store

        t0 = time.perf_counter()
        build_synthetic_store(args.make_synthetic)
        print(f"synthetic store {args.make_synthetic} built in {time.perf_counter() - t0:.1f} s")
        return 0

    from nowcast.config import read_mapping
    from training.dap.plan import load_plan
    from training.dap.runner import evaluate, prepare

    data = read_mapping(args.plan)
    store = Path(data["data"]["store"])
    if not store.is_absolute():
        store = ROOT / store
        data["data"]["store"] = str(store)
    if not ensure_real_store(store):
        return 0
    if args.skip_learned:
        data["methods"] = [m for m in data["methods"] if not m.get("train")]
    if args.repetitions:
        data["splits"]["repetitions"] = args.repetitions
    if args.stride:
        data["splits"]["stride"] = args.stride
    plan = load_plan(data=data)
    prep = prepare(plan)
    n_fc = sum(len(s.test_starts) for s in prep.splits)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    ref = None
    for w in args.workers:
        t0 = time.perf_counter()
        res = evaluate(plan, args.out / f"dap-w{w}", workers=w, report=False)
        wall = time.perf_counter() - t0
        recs = [json.loads(x) for x in res.ledger.read_text().splitlines()]
        splits = [r for r in recs if r["event"] == "split" and r["run_id"] == recs[-1]["run_id"]]
        task_s = sum(r["timings"]["total_s"] for r in splits)
        same = None
        if ref is None:
            ref = res.results
        else:
            same = all(
                np.array_equal(ref[v].values, res.results[v].values, equal_nan=True)
                for v in ref.data_vars
                if np.issubdtype(ref[v].dtype, np.number)
            )
        rows.append(
            {
                "workers": w,
                "wall_s": round(wall, 2),
                "sum_split_s": round(task_s, 2),
                "identical_to_first": same,
            }
        )
    base = rows[0]["wall_s"]
    for r in rows:
        r["speedup"] = round(base / r["wall_s"], 2)
    out = {
        "benchmark": "dap",
        "plan": str(args.plan),
        "plan_hash": prep.plan_hash,
        "methods": [m.label for m in plan.methods],
        "n_splits": len(prep.splits),
        "n_forecasts_per_method": n_fc,
        "grid": prep.store_info["crop_shape"],
        "leads": len(prep.lead_steps),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "runs": rows,
    }
    print(
        f"DAP plan {plan.name} ({prep.plan_hash[:12]}): {len(prep.splits)} splits, {n_fc} forecasts x "
        f"{len(plan.methods)} methods, grid {out['grid']}, {os.cpu_count()} CPUs"
    )
    print(f"{'workers':>8} {'wall s':>9} {'sum split s':>12} {'speed-up':>9} {'identical':>10}")
    for r in rows:
        print(
            f"{r['workers']:>8} {r['wall_s']:>9.1f} {r['sum_split_s']:>12.1f} {r['speedup']:>9.2f} {str(r['identical_to_first']):>10}"
        )
    path = args.out / "bench_dap.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
