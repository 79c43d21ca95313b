"""`nowcast serve` end to end: ingest process + inference process + API from one command, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest


def _wait_status(url: str, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.time() + timeout
    last: dict = {}
    while time.time() < deadline:
        assert proc.poll() is None, f"nowcast serve exited early with {proc.returncode}"
        try:
            last = httpx.get(url + "/v1/status", timeout=5).json()
            if last.get("forecast"):
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no forecast within {timeout} s; last status {last}")


def _maps_torch(p: psutil.Process) -> bool:
    """True when the process has torch's shared library mapped (torch imported)."""
    return any("libtorch" in m.path for m in p.memory_maps())


@pytest.mark.slow
def test_serve_with_no_configuration(tmp_path: Path, free_port) -> None:  # noqa: ANN001
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOWCAST_")}
    env["PYSTEPS_SILENT_IMPORT"] = "1"
    t0 = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        status = _wait_status(url, proc, timeout=60)
        first_forecast_s = time.time() - t0
        assert first_forecast_s < 60
        # the live defaults: the shipped synthetic ConvLSTM, champion of the registry seeded in var/models
        assert status["model"]["active"] == "convlstm" and status["model"]["fallback"] is False, status["model"]
        assert status["model"]["registry_version"] and status["model"]["card_url"] == "/v1/model/card"
        assert status["forecast"]["model"] == "convlstm"
        assert (tmp_path / "var" / "models" / "status.json").is_file()
        assert httpx.get(url + "/v1/model/card", timeout=10).json()["lightning_probability"]
        assert status["observations"]["frames"] >= 12  # the synthetic source backfilled the last hour
        assert status["ingest"] is not None
        assert (tmp_path / "var" / "observations.zarr").is_dir() and (tmp_path / "var" / "forecasts.zarr").is_dir()
        frames = httpx.get(url + "/v1/frames", timeout=10).json()
        assert frames["forecast"], frames
        tile = httpx.get(url + frames["forecast"][2]["tiles"]["rain"].format(z=6, x=33, y=22), timeout=30)
        assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
        assert "immutable" in tile.headers["cache-control"]
        assert httpx.get(url + "/", timeout=10).status_code == 200
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2, f"ingest and inference should run as child processes: {children}"
        # the ConvLSTM (torch) runs in the inference child; the API process never loads torch
        torch_in = [c.pid for c in children if _maps_torch(c)]
        assert len(torch_in) == 1, f"torch should be loaded by exactly one child (inference), got {torch_in}"
        assert not _maps_torch(psutil.Process(proc.pid)), "the API process loaded torch"
        assert psutil.Process(torch_in[0]).nice() == min(19, psutil.Process(proc.pid).nice() + 5)  # inference_nice: below the API
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise AssertionError(f"nowcast serve did not stop on SIGTERM; output:\n{out}") from None
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}/" in out
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"child processes still running after SIGTERM: {[p.pid for p in alive]}"
