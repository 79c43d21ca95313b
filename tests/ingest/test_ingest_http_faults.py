"""Ingest over real HTTP (loopback server with injected faults) of real KNMI radar files.

After each scenario: the store opens, every frame is complete or absent, no frame is stored
twice, every good frame the server offered is stored exactly once, bad files are quarantined
with their reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from ingest_helpers import KNMI_TEMPLATE, FaultServer, assert_store_consistent, knmi_file, slot

from ingest import IngestSettings, IngestStatus, SourceRunner, read_ingest_status
from nowcast.grid import Grid
from nowcast.sources import create_source
from nowcast.store import ObservationStore

TIMEOUT = 0.5


def path_of(t: pd.Timestamp) -> str:
    return t.strftime(KNMI_TEMPLATE)


def make_runner(server: FaultServer, store: ObservationStore, tmp_path: Path, name: str = "knmi", **opts) -> SourceRunner:
    src = create_source("http", name=name, url=server.url(KNMI_TEMPLATE), timeout=TIMEOUT, store_cadence=store.cadence, **opts)
    settings = IngestSettings(
        backfill=pd.Timedelta("1h"),
        quarantine_dir=tmp_path / "quarantine",
        missing_retry=pd.Timedelta(0),
    )
    return SourceRunner(src, store, settings, IngestStatus(store))


def test_http_faults_are_survived_and_recovered(server: FaultServer, knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    good = {}
    plan = {
        0: ["500"],
        1: ["slow"],
        2: ["reset"],
        3: ["cut"],
        4: ["404"],  # offered late: arrives out of order
        5: [],
        11: ["drip"],
    }
    for i, faults in plan.items():
        server.serve(path_of(slot(i)), knmi_file(knmi_dir, slot(i)).read_bytes(), faults)
        good[slot(i)] = knmi_file(knmi_dir, slot(i))
    raw6 = knmi_file(knmi_dir, slot(6)).read_bytes()
    server.serve(path_of(slot(6)), raw6[: len(raw6) * 2 // 3])  # truncated file
    corrupt = bytearray(knmi_file(knmi_dir, slot(7)).read_bytes())
    corrupt[8:4000] = bytes(3992)  # superblock and object headers wiped
    server.serve(path_of(slot(7)), bytes(corrupt))
    server.serve(path_of(slot(8)), b"<html><body>Service temporarily moved</body></html>\n" * 50)  # not radar
    # slot 9: the provider skipped it (never served)
    server.serve(path_of(slot(10)), knmi_file(knmi_dir, slot(5)).read_bytes())  # duplicate of slot 5

    url = str(tmp_path / "obs.zarr")
    store = ObservationStore.create(url, knmi_grid)
    runner = make_runner(server, store, tmp_path)
    now = slot(11) + pd.Timedelta("2min")

    t0 = time.monotonic()
    first = runner.run_once(now)
    elapsed = time.monotonic() - t0
    # slow answers and drips are cut at the timeout: the whole run stays short
    assert elapsed < 8.0, elapsed
    assert first.quarantined == 3
    assert first.failed >= 4  # 500, slow, reset, cut, drip
    assert store.has(slot(5)) and not store.has(slot(0))

    second = runner.run_once(now)
    assert second.errors == [] and second.quarantined == 0
    third = runner.run_once(now)
    assert third.ingested == 0 and third.quarantined == 0 and third.failed == 0

    assert_store_consistent(url, good)

    qdir = tmp_path / "quarantine" / "knmi"
    reasons = sorted(qdir.glob("*.reason.txt"))
    assert len(reasons) == 3
    texts = {r.read_text().split("key: ")[1].split("\n")[0].rsplit("/", 1)[-1]: r.read_text() for r in reasons}
    assert set(texts) == {Path(path_of(slot(i))).name for i in (6, 7, 8)}
    assert all("reason: " in t and len(t.split("reason: ")[1].strip()) > 5 for t in texts.values())
    for r in reasons:  # the quarantined bytes are kept beside their reason
        assert r.with_name(r.name[: -len(".reason.txt")]).is_file()
    # a bad file's validators are not remembered (it may be a truncated transfer of a good
    # file with the same ETag): it is requested unconditionally, and the same bad content
    # (same SHA-1) is recognised and not quarantined again
    assert server.requests(path_of(slot(8))) == [200, 200, 200]
    # the skipped slot was asked for, is reported missing, never failed the run
    assert set(server.requests(path_of(slot(9)))) == {404}
    status = read_ingest_status(ObservationStore.open(url))["sources"]["knmi"]
    assert status["frames_ingested"] == len(good)
    assert status["frames_quarantined"] == 3
    assert status["last_frame"] == slot(11).isoformat()
    assert status["frames_duplicate"] >= 1


def test_restart_resumes_and_backfills_the_gap(server: FaultServer, knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    for i in range(8):
        server.serve(path_of(slot(i)), knmi_file(knmi_dir, slot(i)).read_bytes())
    url = str(tmp_path / "obs.zarr")
    store = ObservationStore.create(url, knmi_grid)
    make_runner(server, store, tmp_path).run_once(slot(3) + pd.Timedelta("1min"))
    assert list(store.times()) == [slot(i) for i in range(4)]
    before = {i: len(server.requests(path_of(slot(i)))) for i in range(8)}
    # "restart": new store object, new runner, the process was down for 20 minutes
    store2 = ObservationStore.open(url, "a")
    rep = make_runner(server, store2, tmp_path).run_once(slot(7) + pd.Timedelta("1min"))
    assert rep.ingested == 4 and rep.backfilled == 1  # 00:20 was 16 min old when fetched
    for i in range(4):  # already stored: not fetched again
        assert len(server.requests(path_of(slot(i)))) == before[i]
    assert_store_consistent(url, {slot(i): knmi_file(knmi_dir, slot(i)) for i in range(8)})


def test_latest_alias_uses_conditional_requests(server: FaultServer, knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    server.serve("/latest.h5", knmi_file(knmi_dir, slot(0)).read_bytes())
    store = ObservationStore.create(str(tmp_path / "obs.zarr"), knmi_grid)
    src = create_source("http", name="latest", latest_url=server.url("/latest.h5"), timeout=TIMEOUT)
    runner = SourceRunner(src, store, IngestSettings(quarantine_dir=tmp_path / "q"))
    now = slot(1)
    assert runner.run_once(now).ingested == 1
    assert runner.run_once(now).ingested == 0
    assert server.requests("/latest.h5") == [200, 304]
    server.serve("/latest.h5", knmi_file(knmi_dir, slot(1)).read_bytes())
    assert runner.run_once(now + pd.Timedelta("5min")).ingested == 1
    assert list(store.times()) == [slot(0), slot(1)]


def test_a_failing_source_does_not_stop_the_others(server: FaultServer, knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    from ingest.config import IngestConfig
    from ingest.process import IngestService

    for i in range(3):
        server.serve(path_of(slot(i)), knmi_file(knmi_dir, slot(i)).read_bytes())
    server.serve("/broken/x.h5", b"", ["500"] * 1000)
    url = str(tmp_path / "obs.zarr")
    ObservationStore.create(url, knmi_grid)
    cfg = IngestConfig.model_validate(
        {
            "store": {"url": url, "create": False},
            "quarantine_dir": str(tmp_path / "q"),
            "timeout": TIMEOUT,
            "sources": [
                {"name": "down", "type": "http", "url": "http://127.0.0.1:9/nothing/%H%M.h5", "backfill": "30min"},
                {"name": "broken", "type": "http", "latest_url": server.url("/broken/x.h5")},
                {"name": "nofolder", "type": "directory", "path": str(tmp_path / "does-not-exist")},
                {"name": "good", "type": "http", "url": server.url(KNMI_TEMPLATE), "backfill": "1h"},
            ],
        }
    )
    service = IngestService(cfg)
    try:
        reports = {r.source: r for r in service.run_once(slot(2) + pd.Timedelta("1min"))}
    finally:
        service.close()
    assert reports["good"].ingested == 3 and not reports["good"].errors
    assert reports["down"].failed > 0 and reports["broken"].failed == 1 and reports["nofolder"].errors
    status = read_ingest_status(ObservationStore.open(url))["sources"]
    assert "HTTP 500" in status["broken"]["last_error"]
    assert "does not exist" in status["nofolder"]["last_error"]
    assert status["good"]["last_error"] is None and status["good"]["frames_ingested"] == 3
    assert_store_consistent(url, {slot(i): knmi_file(knmi_dir, slot(i)) for i in range(3)})


@pytest.mark.parametrize("fault", ["500", "reset", "slow", "cut"])
def test_each_transient_fault_alone_is_retried(fault: str, server: FaultServer, knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    server.serve(path_of(slot(0)), knmi_file(knmi_dir, slot(0)).read_bytes(), [fault])
    url = str(tmp_path / "obs.zarr")
    store = ObservationStore.create(url, knmi_grid)
    runner = make_runner(server, store, tmp_path)
    rep = runner.run_once(slot(0) + pd.Timedelta("1min"))
    assert rep.failed == 1 and rep.ingested == 0 and rep.quarantined == 0
    rep = runner.run_once(slot(0) + pd.Timedelta("1min"))
    assert rep.ingested == 1
    assert not (tmp_path / "quarantine").exists()
    assert_store_consistent(url, {slot(0): knmi_file(knmi_dir, slot(0))})


def test_a_failed_write_is_fetched_again_not_treated_as_unmodified(server: FaultServer, knmi_dir: Path, knmi_grid: Grid, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame fetched (ETag seen) but not stored must not be skipped later as 304 Not Modified."""
    from nowcast import dims

    for i in range(2):
        server.serve(path_of(slot(i)), knmi_file(knmi_dir, slot(i)).read_bytes())
    url = str(tmp_path / "obs.zarr")
    store = ObservationStore.create(url, knmi_grid)
    runner = make_runner(server, store, tmp_path)
    original = store.append
    failures = []

    def flaky(frame, **kw):  # noqa: ANN001, ANN003, ANN202
        if dims.to_utc_timestamp(frame[dims.TIME].values) == slot(0) and not failures:
            failures.append(1)
            raise OSError("No space left on device")
        return original(frame, **kw)

    monkeypatch.setattr(store, "append", flaky)
    rep = runner.run_once(slot(1) + pd.Timedelta("1min"))
    assert rep.ingested == 1 and rep.failed == 1 and "No space left" in rep.errors[0]
    rep = runner.run_once(slot(1) + pd.Timedelta("1min"))
    assert rep.ingested == 1
    assert server.requests(path_of(slot(0))) == [200, 200]
    assert_store_consistent(url, {slot(i): knmi_file(knmi_dir, slot(i)) for i in range(2)})


def test_new_frames_are_announced_to_the_callback_url(server: FaultServer, knmi_dir: Path, knmi_grid: Grid, tmp_path: Path) -> None:
    import json

    for i in range(2):
        server.serve(path_of(slot(i)), knmi_file(knmi_dir, slot(i)).read_bytes())
    store = ObservationStore.create(str(tmp_path / "obs.zarr"), knmi_grid)
    src = create_source("http", name="knmi", url=server.url(KNMI_TEMPLATE), timeout=TIMEOUT)
    settings = IngestSettings(quarantine_dir=tmp_path / "q", notify_url=server.url("/hook"), backfill=pd.Timedelta("1h"))
    assert SourceRunner(src, store, settings).run_once(slot(1) + pd.Timedelta("1min")).ingested == 2
    posts = [json.loads(body) for path, body in server.posts if path == "/hook"]
    assert [p["time"] for p in posts] == [slot(1).isoformat(), slot(0).isoformat()]  # newest first
    assert posts[-1]["version"] == store.version and posts[0]["source"] == "knmi"
    # a dead callback never stops the ingest
    server.serve(path_of(slot(2)), knmi_file(knmi_dir, slot(2)).read_bytes())
    settings.notify_url = "http://127.0.0.1:9/hook"
    assert SourceRunner(src, store, settings).run_once(slot(2) + pd.Timedelta("1min")).ingested == 1
