"""Regressions of the outside crash and fault test (issue 13): hard download deadline,
truncated downloads that carry the full file's ETag, status counts after a crash."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from ingest_helpers import KNMI_TEMPLATE, FaultServer, assert_store_consistent, knmi_file, slot

from ingest import IngestSettings, IngestStatus, SourceRunner, read_ingest_status
from nowcast.grid import Grid
from nowcast.sources import create_source
from nowcast.sources.base import Item, TransientError
from nowcast.store import ObservationStore


def path_of(t: pd.Timestamp) -> str:
    return t.strftime(KNMI_TEMPLATE)


@pytest.mark.parametrize("fault", ["trickle", "trickle-nolength"])
def test_hard_timeout_ends_a_dripping_transfer(fault: str, knmi_dir: Path) -> None:
    """One byte every 0.25 s keeps every read under the read timeout: only a deadline on the
    whole transfer ends it, with or without Content-Length."""
    server = FaultServer(trickle_interval=0.25, trickle_seconds=8.0).start()
    try:
        path = path_of(slot(0))
        server.serve(path, knmi_file(knmi_dir, slot(0)).read_bytes(), [fault])
        src = create_source("http", name="knmi", url=server.url(KNMI_TEMPLATE), timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(TransientError, match="exceeded the 1 s timeout"):
            src.fetch(Item(key=server.url(path), time=slot(0)), {})
        elapsed = time.monotonic() - t0
        assert elapsed < 1.6, f"the transfer ran {elapsed:.1f} s past a 1 s deadline"
        assert not list(src._tmp.iterdir()), "the partial download is removed"
        # the next request (normal server) is fetched whole
        got = src.fetch(Item(key=server.url(path), time=slot(0)), {})
        assert got.path is not None and got.path.read_bytes() == knmi_file(knmi_dir, slot(0)).read_bytes()
        got.cleanup()
        src.close()
    finally:
        server.stop()


def test_truncated_download_with_the_full_etag_is_fetched_again(server: FaultServer, knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    """No Content-Length, half the body, the full file's ETag: quarantined as truncated HDF5,
    and the next run downloads it again (no If-None-Match) and stores it."""
    path = path_of(slot(0))
    server.serve(path, knmi_file(knmi_dir, slot(0)).read_bytes(), ["cut-nolength"])
    store = ObservationStore.create(str(tmp_path / "obs.zarr"), knmi_grid)
    src = create_source("http", name="knmi", url=server.url(KNMI_TEMPLATE), timeout=2.0, store_cadence=store.cadence)
    settings = IngestSettings(backfill=pd.Timedelta("10min"), quarantine_dir=tmp_path / "quarantine", missing_retry=pd.Timedelta(0))
    runner = SourceRunner(src, store, settings, IngestStatus(store))
    now = slot(0) + pd.Timedelta("1min")

    first = runner.run_once(now)
    assert first.quarantined == 1, first
    reasons = list((tmp_path / "quarantine" / "knmi").glob("*.reason.txt"))
    assert len(reasons) == 1
    text = reasons[0].read_text()
    assert "truncated HDF5" in text and "unknown or unsupported format" not in text, text

    second = runner.run_once(now)
    assert second.ingested == 1, second
    assert server.requests(path) == ["cut-nolength", 200], "the second request is unconditional"
    assert_store_consistent(store.url, {slot(0): knmi_file(knmi_dir, slot(0))})
    assert runner.run_once(now).ingested == 0
    assert server.requests(path) == ["cut-nolength", 200], "a stored slot is not requested again"


def test_status_counts_frames_written_before_a_crash(server: FaultServer, knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    """Frames stored by a run whose status was never flushed (the process died) still count."""
    for i in range(3):
        server.serve(path_of(slot(i)), knmi_file(knmi_dir, slot(i)).read_bytes())
    store = ObservationStore.create(str(tmp_path / "obs.zarr"), knmi_grid)
    src = create_source("http", name="knmi", url=server.url(KNMI_TEMPLATE), timeout=2.0, store_cadence=store.cadence)
    settings = IngestSettings(backfill=pd.Timedelta("20min"), quarantine_dir=tmp_path / "q", missing_retry=pd.Timedelta(0))
    # a runner without a status object: frames are stored, the status document is never written
    assert SourceRunner(src, store, settings).run_once(slot(2) + pd.Timedelta("1min")).ingested == 3
    assert read_ingest_status(store) == {}
    # the status of the restarted process, and what the API reads, count all 3
    status = IngestStatus(ObservationStore.open(store.url, "a"))
    status.register("knmi", "radar")
    status.flush()
    assert read_ingest_status(store)["sources"]["knmi"]["frames_ingested"] == 3
