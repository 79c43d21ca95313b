"""``nowcast bench [--device cpu|cuda] [--quick] [--only NAME]``: run the benchmark suite.

Runs the scripts of ``benchmarks/`` (a source checkout is needed: they are not installed with
the package) and writes ``benchmarks/results.json`` and ``benchmarks/results.md``; see
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

help = "run the benchmark suite and write benchmarks/results.json"


def benchmarks_dir() -> Path:
    """The ``benchmarks/`` folder: $NOWCAST_BENCHMARKS, else beside the package, else ./benchmarks."""
    env = os.environ.get("NOWCAST_BENCHMARKS")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "benchmarks", Path.cwd() / "benchmarks"]
    for c in candidates:
        if (c / "run_all.py").is_file():
            return c
    raise FileNotFoundError(f"benchmarks/run_all.py not found (looked in {', '.join(str(c) for c in candidates)}); run from a source checkout")


def load_runner(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("nowcast_benchmarks_run_all", folder / "run_all.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses in the module look themselves up there
    spec.loader.exec_module(mod)
    return mod


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device of the model/training benchmarks (default cpu)")
    p.add_argument("--quick", action="store_true", help="small sizes: the whole suite in minutes")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable): store, ingest, models, training, api, dap")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="give up on a benchmark after S seconds")


def run(args: argparse.Namespace) -> int:
    from cli import CommandError

    folder = benchmarks_dir()
    runner = load_runner(folder)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CommandError("--device cuda: no CUDA device available")
    try:
        res = runner.run_suite(args.only, args.quick, args.device, results_dir=folder, timeout_s=args.timeout, bench_dir=folder)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    print(runner.to_markdown(res))
    print(f"wrote {folder / 'results.json'} and {folder / 'results.md'}")
    bad = [f"{n}: {r.get('error')}" for n, r in res["benchmarks"].items() if r["status"] in ("failed", "timeout") and (not args.only or n in args.only)]
    if bad:
        raise CommandError("benchmarks failed: " + "; ".join(bad))
    return 0
