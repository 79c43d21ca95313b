"""The ingest process killed with SIGKILL in the middle of writing, then restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from ingest_helpers import KNMI_TEMPLATE, FaultServer, assert_store_consistent, knmi_file, slot

from nowcast.grid import Grid
from nowcast.store import ObservationStore

REPO = Path(__file__).resolve().parents[2]
N = 12


def _config(path: Path, store: str, server: FaultServer, tmp_path: Path) -> Path:
    # the source clock is shifted so that 2010-08-26 02:01 is "now" (the KNMI day)
    offset = (slot(N - 1) + pd.Timedelta("1min")) - pd.Timestamp.now(tz="UTC").tz_localize(None)
    path.write_text(
        f"""
quarantine_dir = "{tmp_path / 'quarantine'}"
timeout = 2.0
lock_ttl = 30
[store]
url = "{store}"
create = false
[[sources]]
name = "knmi"
type = "http"
url = "{server.url(KNMI_TEMPLATE)}"
backfill = "3h"
interval = 3600
jitter = 0
clock_offset = "{int(offset.total_seconds())}s"
"""
    )
    return path


def _ingest(cfg: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "-v", "ingest", "--config", str(cfg), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_sigkill_mid_write_and_restart(server: FaultServer, knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    for i in range(N):
        server.serve(KNMI_TEMPLATE.replace("%Y%m%d%H%M", slot(i).strftime("%Y%m%d%H%M")), knmi_file(knmi_dir, slot(i)).read_bytes())
    url = str(tmp_path / "obs.zarr")
    ObservationStore.create(url, knmi_grid)
    cfg = _config(tmp_path / "ingest.toml", url, server, tmp_path)

    proc = _ingest(cfg)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            n = len(ObservationStore.open(url).times())
            if n >= 3:
                break
            if proc.poll() is not None:
                pytest.fail(f"ingest exited early: {proc.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.01)
        else:
            pytest.fail("ingest did not write frames in time")
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the backfill, likely mid-write
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert Path(url + ".ingest.lock").exists(), "the killed process leaves its lease behind"

    # right after the kill: the store opens and holds whole frames only
    store = ObservationStore.open(url)
    partial = list(store.times())
    assert 3 <= len(partial) < N
    assert_store_consistent(url, {t: knmi_file(knmi_dir, t) for t in partial}, exact_counter=False)

    # restart: takes over the stale lease (dead pid), backfills the rest, exactly once each
    again = _ingest(cfg, "--once")
    out, _ = again.communicate(timeout=120)
    log = out.decode()
    assert again.returncode == 0, log[-2000:]
    # exact counters: the writer repairs the root marker a kill between two metadata writes left behind
    assert_store_consistent(url, {slot(i): knmi_file(knmi_dir, slot(i)) for i in range(N)}, exact_counter=True)
    from ingest import read_ingest_status

    assert read_ingest_status(ObservationStore.open(url))["sources"]["knmi"]["frames_ingested"] == N
    # no frame stored twice: the restart wrote exactly the frames that were missing
    stored_again = {pd.Timestamp(line.split("stored frame ")[1].split(" from")[0]) for line in log.splitlines() if "stored frame" in line}
    assert stored_again == {slot(i) for i in range(N)} - set(partial), log[-2000:]
    assert not Path(url + ".ingest.lock").exists()


def test_second_writer_is_refused(knmi_grid: Grid, tmp_path: Path) -> None:
    from ingest import LockHeld, WriterLock

    url = str(tmp_path / "obs.zarr")
    first = WriterLock(url, ttl=30)
    first.acquire()
    with pytest.raises(LockHeld, match="being written by ingest pid"):
        WriterLock(url, ttl=30).acquire()
    first.refresh()
    first.release()
    second = WriterLock(url, ttl=0.2)
    second.acquire()  # free again
    # a lease not renewed within its holder's ttl is stale and taken over (the holder's expiry
    # decides, not the contender's ttl)
    third = WriterLock(url, ttl=30)
    time.sleep(0.3)
    third.acquire()
    with pytest.raises(LockHeld, match="taken over"):
        second.refresh()
    third.release()
