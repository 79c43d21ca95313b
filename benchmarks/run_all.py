"""Run every benchmark of the suite and write ``benchmarks/results.json`` + ``benchmarks/results.md``.

``nowcast bench`` (``make bench``) calls :func:`run_suite`; ``python benchmarks/run_all.py``
does the same. Each benchmark module (``bench_<name>.py``, interface in ``common.py``) runs in
its own process, so one failure does not stop the others and peak memory is per benchmark.
A module that is absent is reported as such; a failing one is recorded with its error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from common import SCHEMA, environment, markdown_table  # type: ignore[import-not-found]  # noqa: E402

#: benchmark name -> (module file, what it measures); order of the report
BENCHMARKS: dict[str, tuple[str, str]] = {
    "store": ("bench_store.py", "import throughput, store size, window-read latency, codecs"),
    "ingest": ("bench_ingest.py", "ingest frames/s (backfill), drop-folder lag, synthetic frame cost"),
    "models": ("bench_models.py", "forecast wall time: convlstm vs extrapolation vs S-PROG"),
    "training": ("bench_training.py", "training samples/s"),
    "api": ("bench_api.py", "API req/s and p50/p99 per endpoint at 1/16/64 connections (wrk), ratio to a minimal FastAPI app"),
    "dap": ("bench_dap.py", "DAP evaluation wall time vs dask workers"),
}


@dataclass(frozen=True)
class ScriptAdapter:
    """How to run a benchmark script that has its own command line (not the common interface).

    ``args(quick, out_dir)`` -> its arguments; ``output(out_dir)`` -> the JSON file it writes;
    ``rows_key``: the list of row dicts in that JSON.
    """

    args: Callable[[bool, Path], list[str]]
    output: Callable[[Path], Path]
    rows_key: str


ADAPTERS: dict[str, ScriptAdapter] = {
    "ingest": ScriptAdapter(
        lambda quick, out: (["--frames", "12", "--large-frames", "2", "--lag-files", "3"] if quick else []) + ["--out", str(out / "bench_ingest.json")],
        lambda out: out / "bench_ingest.json",
        "results",
    ),
    "api": ScriptAdapter(
        lambda quick, out: (["--levels", "1", "16", "--seconds", "2", "--results", str(out / "bench_api.json")] if quick else ["--out", str(out / "bench_api.json")]),
        lambda out: out / "bench_api.json",
        "rows",
    ),
    "dap": ScriptAdapter(
        lambda quick, out: (["--workers", "1", "--skip-learned", "--repetitions", "1", "--stride", "6"] if quick else []) + ["--out", str(out / "dap")],
        lambda out: out / "dap" / "bench_dap.json",
        "runs",
    ),
}


def uses_common_interface(path: Path) -> bool:
    """True when the module follows common.py (``NAME``, ``run(quick, device)``, ``main(NAME, run)``)."""
    text = path.read_text()
    return re.search(r"^def run\(\s*quick\b", text, re.M) is not None and "main(NAME, run)" in text


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        elif isinstance(v, list | tuple):
            if all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
                out[key] = "x".join(str(x) for x in v) if len(v) <= 4 else f"{len(v)} values"  # shapes
            elif all(isinstance(x, int | float | str | bool) or x is None for x in v):
                out[key] = ", ".join(str(x) for x in v) if len(v) <= 8 else f"{len(v)} values"
        else:
            out[key] = v
    return out


def adapt(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A script's own JSON as a common result: its row list flattened, top-level scalars as notes."""
    adapter = ADAPTERS[name]
    raw_rows = doc.get(adapter.rows_key, [])
    rows = [_flatten(r) for r in raw_rows if isinstance(r, dict)]
    notes = [f"{k}: {v}" for k, v in _flatten({k: v for k, v in doc.items() if k != adapter.rows_key}).items() if not k.startswith(("machine", "when"))]
    return {"name": name, "rows": rows, "columns": list(dict.fromkeys(k for r in rows for k in r)), "notes": notes[:12], "skipped": [], "raw": doc}


def _run_process(cmd: list[str], cwd: Path, log: Path, timeout_s: float | None) -> tuple[int, float, float, bool]:
    """Run ``cmd`` with output to ``log``; (exit code, wall s, peak RSS MiB of the process, timed out)."""
    env = dict(os.environ, PYSTEPS_SILENT_IMPORT="1", MPLBACKEND="Agg")
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout_s, proc.kill) if timeout_s else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
    timed_out = proc.returncode < 0 and timeout_s is not None and time.perf_counter() - t0 >= timeout_s
    return proc.returncode, time.perf_counter() - t0, peak, timed_out


def run_one(name: str, quick: bool, device: str, out_dir: Path, timeout_s: float | None = None, bench_dir: Path = BENCH_DIR) -> dict[str, Any]:
    """Run one benchmark module in its own process; returns its result or a status record."""
    module, what = BENCHMARKS[name]
    path = bench_dir / module
    base = {"name": name, "what": what, "rows": [], "columns": []}
    if not path.is_file():
        return base | {"status": "missing", "error": f"{path.name} not found"}
    common = uses_common_interface(path)
    if not common and name not in ADAPTERS:
        return base | {"status": "failed", "error": f"{path.name} follows neither common.py nor a known adapter"}
    if common:
        out = out_dir / f"{name}.json"
        cmd = [sys.executable, str(path), "--device", device, "--json", str(out), "--no-print"] + (["--quick"] if quick else [])
    else:
        out = ADAPTERS[name].output(out_dir)
        cmd = [sys.executable, str(path), *ADAPTERS[name].args(quick, out_dir)]
    out.unlink(missing_ok=True)
    log = out_dir / f"{name}.log"
    code, wall, peak, timed_out = _run_process(cmd, bench_dir.parent, log, timeout_s)
    if timed_out:
        return base | {"status": "timeout", "error": f"no result within {timeout_s:g} s (log {log.name})", "wall_s": round(wall, 3)}
    if code != 0 or not out.is_file():
        lines = log.read_text(errors="replace").strip().splitlines()
        return base | {"status": "failed", "error": f"exit {code}: {lines[-1] if lines else 'no output'} (log {log.name})", "wall_s": round(wall, 3)}
    doc = json.loads(out.read_text())
    res = doc if common else adapt(name, doc)
    res.update(status="ok", what=what, wall_s=round(wall, 3), peak_rss_mb=round(peak, 1))
    if not common:
        res.update(device="cpu", quick=quick)
    return res


def to_markdown(results: dict[str, Any]) -> str:
    """The whole suite as one markdown document."""
    env = results["environment"]
    lines = [
        "# Benchmark results",
        "",
        f"Run {results['finished']} on {env.get('platform')} ({env.get('cpu_count')} CPUs"
        + (f", {env['gpu']}" if env.get("gpu") else "")
        + f"), device `{results['device']}`, {'quick' if results['quick'] else 'full'} mode, torch {env.get('torch', '?')}.",
        "Regenerate with `make bench` (`nowcast bench [--device cuda] [--quick] [--only NAME]`).",
        "",
        "| benchmark | status | wall s | peak RSS MiB |",
        "|---|---|---|---|",
    ]
    for name, r in results["benchmarks"].items():
        lines.append(f"| {name} | {r.get('status')}{': ' + r['error'] if r.get('error') else ''} | {r.get('wall_s', '-')} | {r.get('peak_rss_mb', '-')} |")
    for name, r in results["benchmarks"].items():
        if r.get("status") != "ok":
            continue
        lines += ["", f"## {name}: {r.get('what', '')}", "", markdown_table(r["rows"], r["columns"])]
        lines += [f"- {n}" for n in r.get("notes", [])]
        lines += [f"- skipped: {s}" for s in r.get("skipped", [])]
    return "\n".join(lines) + "\n"


def run_suite(
    names: list[str] | None = None,
    quick: bool = False,
    device: str = "cpu",
    results_dir: Path = BENCH_DIR,
    timeout_s: float | None = None,
    bench_dir: Path = BENCH_DIR,
) -> dict[str, Any]:
    """Run ``names`` (default: all) and write ``results.json`` / ``results.md`` in ``results_dir``.

    Per-benchmark JSON goes to ``<results_dir>/out/``. Returns the combined results.
    """
    unknown = sorted(set(names or []) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; valid: {', '.join(BENCHMARKS)}")
    selected = [n for n in BENCHMARKS if not names or n in names]
    out_dir = results_dir / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    benches: dict[str, Any] = {}
    for name in selected:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        benches[name] = run_one(name, quick, device, out_dir, timeout_s, bench_dir)
        r = benches[name]
        print(f"[bench] {name}: {r['status']}" + (f" ({r.get('wall_s', 0):.1f} s)" if r["status"] == "ok" else f" - {r.get('error')}"), file=sys.stderr, flush=True)
    previous: dict[str, Any] = {}
    target = results_dir / "results.json"
    if names and target.is_file():  # a partial run updates those benchmarks, keeps the others
        try:
            old = json.loads(target.read_text())
            if old.get("schema") == SCHEMA:
                previous = dict(old.get("benchmarks", {}))
        except (OSError, json.JSONDecodeError):
            previous = {}
    benches = {n: (benches[n] if n in benches else previous[n]) for n in BENCHMARKS if n in benches or n in previous}
    results = {
        "schema": SCHEMA,
        "device": device,
        "quick": quick,
        "wall_s": round(time.perf_counter() - t0, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment(device),
        "benchmarks": benches,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (results_dir / "results.md").write_text(to_markdown(results))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="run the nowcast benchmark suite")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", action="append", choices=list(BENCHMARKS), help="run only this benchmark (repeatable)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    args = p.parse_args(argv)
    res = run_suite(args.only, args.quick, args.device, timeout_s=args.timeout)
    print(to_markdown(res))
    try:  # the README's benchmark figures follow the committed results.json
        sys.path.insert(0, str(BENCH_DIR))
        import render_bench  # type: ignore[import-not-found]

        render_bench.main([])
    except ValueError as exc:  # a README without the markers (e.g. a fork): leave it alone
        print(f"README not updated: {exc}", file=sys.stderr)
    return 0 if all(r["status"] in ("ok", "missing") for r in res["benchmarks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
