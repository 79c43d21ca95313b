"""The benchmark runner (`nowcast bench`, benchmarks/run_all.py) on tiny stand-in benchmarks.

The real benchmarks take minutes; here the runner's contract is checked with small modules
written into a temporary benchmarks folder: one following the common interface, one failing,
one script with its own command line (adapter), one absent.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

GOOD = '''
from common import main, result, timed
NAME = "store"
def run(quick, device):
    with timed() as t:
        data = bytearray(8 * 2**20)  # 8 MiB traced allocation
    return result(NAME, [{"case": "a", "quick": quick, "device": device, "peak_py_mb": t.peak_py_mb, "n": len(data)}], notes=["tiny"])
if __name__ == "__main__":
    raise SystemExit(main(NAME, run))
'''

FAILING = '''
from common import main, result
NAME = "models"
def run(quick: bool, device: str) -> dict:
    raise RuntimeError("model exploded")
if __name__ == "__main__":
    raise SystemExit(main(NAME, run))
'''

SCRIPT = '''
import argparse, json, pathlib
p = argparse.ArgumentParser(); p.add_argument("--out", type=pathlib.Path); p.add_argument("--workers", nargs="+")
p.add_argument("--skip-learned", action="store_true"); p.add_argument("--repetitions"); p.add_argument("--stride")
a = p.parse_args(); a.out.mkdir(parents=True, exist_ok=True)
(a.out / "bench_dap.json").write_text(json.dumps({"benchmark": "dap", "n_splits": 4, "grid": [40, 40],
    "runs": [{"workers": int(w), "wall_s": 1.5 / int(w)} for w in a.workers or ["1", "2"]]}))
'''


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    d = tmp_path / "benchmarks"
    d.mkdir()
    shutil.copy(ROOT / "benchmarks" / "common.py", d / "common.py")
    shutil.copy(ROOT / "benchmarks" / "run_all.py", d / "run_all.py")
    (d / "bench_store.py").write_text(GOOD)
    (d / "bench_models.py").write_text(FAILING)
    (d / "bench_dap.py").write_text(SCRIPT)
    return d


def _runner(folder: Path):
    spec = importlib.util.spec_from_file_location("run_all_under_test", folder / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_suite_records_results_failures_and_missing(bench_dir: Path) -> None:
    runner = _runner(bench_dir)
    res = runner.run_suite(None, quick=True, device="cpu", results_dir=bench_dir, timeout_s=120, bench_dir=bench_dir)
    b = res["benchmarks"]
    assert list(b) == list(runner.BENCHMARKS)  # report order
    assert b["store"]["status"] == "ok"
    row = b["store"]["rows"][0]
    assert row["quick"] is True and row["device"] == "cpu" and row["peak_py_mb"] >= 8
    assert b["store"]["peak_rss_mb"] > 10 and b["store"]["wall_s"] > 0
    assert b["models"]["status"] == "failed" and "model exploded" in b["models"]["error"]
    assert b["ingest"]["status"] == "missing" and b["api"]["status"] == "missing"
    assert b["dap"]["status"] == "ok"  # adapted: quick mode asked for one worker
    assert [r["workers"] for r in b["dap"]["rows"]] == [1]
    assert "grid: 40x40" in b["dap"]["notes"]
    on_disk = json.loads((bench_dir / "results.json").read_text())
    assert on_disk["benchmarks"]["store"]["rows"] == b["store"]["rows"]
    md = (bench_dir / "results.md").read_text()
    assert "| case | quick | device | peak_py_mb | n |" in md and "failed: exit" in md
    assert (bench_dir / "out" / "store.json").is_file()


def test_only_updates_one_benchmark_and_keeps_the_others(bench_dir: Path) -> None:
    runner = _runner(bench_dir)
    previous = {"status": "ok", "name": "store", "rows": [{"case": "old"}], "columns": ["case"]}
    (bench_dir / "results.json").write_text(json.dumps({"schema": "nowcast-bench/1", "benchmarks": {"store": previous}}))
    (bench_dir / "bench_models.py").write_text(GOOD.replace('NAME = "store"', 'NAME = "models"'))
    res = runner.run_suite(["models"], quick=True, device="cpu", results_dir=bench_dir, bench_dir=bench_dir)
    assert res["benchmarks"]["models"]["status"] == "ok"
    assert res["benchmarks"]["store"] == previous  # kept from the earlier run
    with pytest.raises(ValueError, match="unknown benchmark.*valid: store"):
        runner.run_suite(["nope"], results_dir=bench_dir, bench_dir=bench_dir)


def test_nowcast_bench_command(bench_dir: Path) -> None:
    env = {"NOWCAST_BENCHMARKS": str(bench_dir), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from cli import main; sys.exit(main())", "bench", "--quick", "--only", "store", "--only", "models"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "## store" in proc.stdout and (bench_dir / "results.md").is_file()
    assert "benchmarks failed: models: exit 1" in proc.stderr and "model exploded" in proc.stderr


def test_standalone_module_writes_json(bench_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    proc = subprocess.run([sys.executable, str(bench_dir / "bench_store.py"), "--quick", "--json", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "| case |" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["name"] == "store" and doc["schema"] == "nowcast-bench/1" and doc["peak_rss_mb"] > 0


def test_real_benchmarks_follow_an_interface() -> None:
    runner = _runner(ROOT / "benchmarks")
    for name, (module, _) in runner.BENCHMARKS.items():
        path = ROOT / "benchmarks" / module
        if path.is_file():
            assert runner.uses_common_interface(path) or name in runner.ADAPTERS, f"{module}: no interface"
    for mine in ("bench_store.py", "bench_models.py", "bench_training.py"):
        assert runner.uses_common_interface(ROOT / "benchmarks" / mine)
