"""The DAP harness on a real dask.distributed cluster: `dask scheduler` and `dask worker`
processes on loopback. The results must equal the single-process run; an unreachable
scheduler must fail fast with its address in the message."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _plan(store: Path) -> dict:
    """A small plan: persistence vs extrapolation, 2 folds, 3 leads (as the DAP smoke plan)."""
    return {
        "name": "test-distributed",
        "data": {"store": str(store)},
        "methods": [
            {"label": "persistence", "model": "persistence"},
            {"label": "extrapolation", "model": "extrapolation", "options": {"n_inputs": 3}},
        ],
        "scores": {"leads": [5, 15, 30], "thresholds": [0.5, 1, 5], "fss_thresholds": [1.0], "fss_scales": [1, 5]},
        "splits": {"block": "gap", "gap": "30min", "folds": 2, "repetitions": 1},
        "seed": 7,
        "run": {"workers": 0},
    }


def _dask_cmd(*args: str) -> list[str]:
    exe = BIN / "dask"
    return [str(exe), *args] if exe.exists() else [sys.executable, "-m", "distributed.cli.dask_spec", *args]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two single-threaded workers, each its own process, on 127.0.0.1."""
    pytest.importorskip("distributed")
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask-logs")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYSTEPS_SILENT_IMPORT="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    procs: list[subprocess.Popen] = []

    def start(name: str, args: list[str]) -> None:
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(_dask_cmd(*args), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))

    try:
        start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard", "--no-show"])
        for i in range(2):
            start(f"worker{i}", ["worker", address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}", "--memory-limit", "0", "--death-timeout", "60"])
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_splits_on_scheduler_equal_single_process(dask_cluster: str, tiny_store: Path, tmp_path: Path) -> None:
    from training.dap.plan import load_plan
    from training.dap.runner import evaluate

    plan = load_plan(data=_plan(tiny_store))
    local = evaluate(plan, tmp_path / "local", workers=0, report=False)
    remote = evaluate(plan, tmp_path / "remote", scheduler=dask_cluster, report=False)
    assert remote.plan_hash == local.plan_hash
    a, b = local.results, remote.results
    assert set(a.data_vars) == set(b.data_vars) and a.sizes == b.sizes
    for name in a.data_vars:
        if np.issubdtype(a[name].dtype, np.number):
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    xr.testing.assert_equal(a.drop_vars([v for v in a.data_vars if not np.issubdtype(a[v].dtype, np.number)]),
                            b.drop_vars([v for v in b.data_vars if not np.issubdtype(b[v].dtype, np.number)]))
    ledger = (tmp_path / "remote" / "ledger.jsonl").read_text()
    assert dask_cluster in ledger  # the run records where it ran


def test_unreachable_scheduler_fails_fast(tiny_store: Path, tmp_path: Path) -> None:
    """An evaluation sent to a scheduler nobody runs: an error naming the address within 15 s."""
    from training.dap.plan import load_plan
    from training.dap.runner import evaluate

    plan = load_plan(data=_plan(tiny_store))
    address = f"tcp://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    with pytest.raises(Exception) as err:  # noqa: B017 - the type is the harness's choice; the message is checked
        evaluate(plan, tmp_path / "out", scheduler=address, report=False)
    elapsed = time.monotonic() - start
    assert address.split("//")[1] in str(err.value), f"{type(err.value).__name__}: {err.value}"
    assert elapsed < 15, f"took {elapsed:.1f} s to report the unreachable scheduler {address}"
