"""The small interface every benchmark module follows, and the helpers they share.

A benchmark module ``benchmarks/bench_<name>.py`` exposes::

    NAME: str                                   # short name, e.g. "store"
    def run(quick: bool, device: str) -> dict   # -> result(NAME, rows, ...), see result()

and ends with ``if __name__ == "__main__": main(NAME, run)``, which makes it runnable alone
(``python benchmarks/bench_store.py [--quick] [--device cpu|cuda]``): it prints a table and
writes ``benchmarks/out/<name>.json``. ``benchmarks/run_all.py`` (``nowcast bench``) runs each
module in its own process, so each benchmark's peak memory (``peak_rss_mb``) is its own.

Rows are flat dicts of JSON scalars (str, int, float, bool, None); numbers are in the units
named by the column (``_s``, ``_ms``, ``_mb``, ``_per_s``...). :func:`timed` measures wall
time and the peak of Python/numpy allocations (``tracemalloc``) of one step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
SCHEMA = "nowcast-bench/1"

if str(ROOT) not in sys.path:  # runnable as a script from anywhere
    sys.path.insert(0, str(ROOT))


def shared_data() -> Path:
    """../shared/data (override with NOWCAST_SHARED_DATA), as the tests use it."""
    return Path(os.environ.get("NOWCAST_SHARED_DATA", ROOT.parent / "shared" / "data"))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class Timing:
    """Result of :func:`timed`: ``seconds`` (wall) and ``peak_py_mb`` (tracemalloc peak)."""

    seconds: float = 0.0
    peak_py_mb: float = 0.0


@contextlib.contextmanager
def timed(trace_memory: bool = True) -> Iterator[Timing]:
    """Wall time and tracemalloc peak (Python + numpy allocations, MiB) of the block."""
    t = Timing()
    started_here = False
    if trace_memory:
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            started_here = True
        tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - start
        if trace_memory:
            t.peak_py_mb = tracemalloc.get_traced_memory()[1] / 2**20
            if started_here:
                tracemalloc.stop()


def repeat(fn: Callable[[], Any], n: int, warmup: int = 1) -> list[float]:
    """Wall times (s) of ``n`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def resolve_device(device: str) -> str:
    """"cpu" or "cuda"; "cuda" without a GPU raises (a benchmark never silently changes device)."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: no CUDA device available")
    return device


def environment(device: str) -> dict[str, Any]:
    """Machine description stamped on results."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "loadavg": [round(x, 2) for x in os.getloadavg()],  # 1/5/15 min when stamped: other jobs on a shared machine
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        if device == "cuda" and torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return env


def result(name: str, rows: list[dict[str, Any]], *, columns: list[str] | None = None, notes: list[str] | None = None, skipped: list[str] | None = None) -> dict[str, Any]:
    """The dict ``run()`` returns: name, rows, column order, notes (units, caveats), skipped parts."""
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    return {"name": name, "rows": rows, "columns": cols, "notes": notes or [], "skipped": skipped or []}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return "-" if v is None else str(v)


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as a GitHub markdown table in ``columns`` order."""
    if not rows:
        return "(no rows)"
    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def finish(res: dict[str, Any], device: str, quick: bool, wall_s: float) -> dict[str, Any]:
    """Stamp environment, mode, wall time and peak memory on a ``run()`` result."""
    res = dict(res)
    res.update(
        {
            "schema": SCHEMA,
            "quick": quick,
            "device": device,
            "wall_s": round(wall_s, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "environment": environment(device),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    return res


def run_module(name: str, run: Callable[[bool, str], dict[str, Any]], quick: bool, device: str) -> dict[str, Any]:
    """Call ``run`` and :func:`finish` its result."""
    device = resolve_device(device)
    t0 = time.perf_counter()
    res = run(quick, device)
    if res.get("name") != name:
        raise ValueError(f"benchmark {name}: run() returned a result named {res.get('name')!r}")
    return finish(res, device, quick, time.perf_counter() - t0)


def print_result(res: dict[str, Any]) -> None:
    print(f"\n## {res['name']} ({'quick' if res.get('quick') else 'full'}, {res.get('device')}, "
          f"{res.get('wall_s', 0):.1f} s, peak RSS {res.get('peak_rss_mb', 0):.0f} MiB)\n")
    print(markdown_table(res["rows"], res["columns"]))
    for n in res.get("notes", []):
        print(f"- {n}")
    for s in res.get("skipped", []):
        print(f"- skipped: {s}")


def main(name: str, run: Callable[[bool, str], dict[str, Any]], argv: list[str] | None = None) -> int:
    """Command line of one benchmark module: run, print the table, write JSON."""
    p = argparse.ArgumentParser(description=f"nowcast benchmark: {name}")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds to a minute)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", type=Path, default=None, help=f"output file (default benchmarks/out/{name}.json)")
    p.add_argument("--no-print", action="store_true", help="do not print the table")
    args = p.parse_args(argv)
    os.environ.setdefault("PYSTEPS_SILENT_IMPORT", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    res = run_module(name, run, args.quick, args.device)
    out = args.json or OUT_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    if not args.no_print:
        print_result(res)
        print(f"\nwrote {out}")
    return 0
