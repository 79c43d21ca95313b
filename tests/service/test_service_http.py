"""HTTP behaviour of the fast paths: validators and 304s, caches that follow the store versions,
request limits (414 / 431 / 413 instead of a reset), 400 messages, OpenAPI patterns, imports."""

from __future__ import annotations

import ast
import contextlib
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tests.service.conftest import T0

ROOT = Path(__file__).resolve().parents[2]
LAST = "20250601T1200"
T1 = T0 + pd.Timedelta("5min")

CACHEABLE = [
    f"/v1/tiles/rain/{LAST}/7/67/45.png",
    "/v1/tiles/rain/latest+5/7/67/45.png",
    f"/v1/maps/rain/{LAST}",
    "/v1/point?lat=46.5&lon=10",
    "/v1/frames",
    "/v1/forecasts",
    "/v1/forecasts/latest",
    f"/v1/forecasts/{LAST}",
    "/v1/legend/rain",
]


@pytest.mark.parametrize("url", CACHEABLE)
def test_cacheable_responses_carry_validators_and_answer_304(shared_env, url: str) -> None:  # noqa: ANN001
    c = shared_env.client
    first = c.get(url)
    assert first.status_code == 200, first.text
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert "cache-control" in first.headers
    again = c.get(url)  # the second answer may come from the response cache: identical
    assert again.content == first.content and again.headers["etag"] == etag
    nm = c.get(url, headers={"If-None-Match": etag})
    assert nm.status_code == 304 and nm.content == b""
    assert nm.headers["etag"] == etag and nm.headers["cache-control"] == first.headers["cache-control"]
    assert c.get(url, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304  # weak comparison, lists
    assert c.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200
    if "last-modified" in first.headers:
        lm = first.headers["last-modified"]
        assert c.get(url, headers={"If-Modified-Since": lm}).status_code == 304
        assert c.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 1990 00:00:00 GMT"}).status_code == 200
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
        assert c.get(url, headers={"If-None-Match": '"x"', "If-Modified-Since": lm}).status_code == 200


def test_every_data_route_sends_last_modified(shared_env) -> None:  # noqa: ANN001
    for url in CACHEABLE[:-1]:  # the legend is static
        assert "last-modified" in shared_env.client.get(url).headers, url


def test_status_has_an_etag_but_stays_no_cache(shared_env) -> None:  # noqa: ANN001
    r = shared_env.client.get("/v1/status")
    assert r.headers["cache-control"] == "no-cache" and r.headers["etag"].startswith('"')


def test_new_frame_changes_etags_and_is_not_hidden_by_the_response_cache(env) -> None:  # noqa: ANN001
    """The ASGI response cache replays answers only while the store versions are unchanged."""
    c = env.client
    urls = ["/v1/tiles/rain/latest/7/67/45.png", "/v1/frames", "/v1/point?lat=46.5&lon=10", "/v1/forecasts/latest"]
    before = {u: c.get(u) for u in urls}
    for u in urls:  # now served by the response cache
        assert c.get(u).content == before[u].content
    env.add_frame(T1)
    after = {u: c.get(u) for u in urls}
    assert after["/v1/frames"].json()["observed"][-1]["key"] == "20250601T1205"
    assert after["/v1/point?lat=46.5&lon=10"].json()["observed"][-1]["time"] == "2025-06-01T12:05:00Z"
    assert after["/v1/tiles/rain/latest/7/67/45.png"].content == c.get("/v1/tiles/rain/20250601T1205/7/67/45.png").content
    assert after["/v1/tiles/rain/latest/7/67/45.png"].headers["etag"] != before["/v1/tiles/rain/latest/7/67/45.png"].headers["etag"]
    # a client revalidating with the old tag gets the new content, not a 304
    r = c.get("/v1/frames", headers={"If-None-Match": before["/v1/frames"].headers["etag"]})
    assert r.status_code == 200 and r.json()["observed"][-1]["key"] == "20250601T1205"
    # a new forecast run (same frame count) is seen too
    env.loop.step()
    assert c.get("/v1/forecasts/latest").json()["init_time"] == "2025-06-01T12:05:00Z"


def test_rerun_of_the_same_init_time_is_a_new_version(env) -> None:  # noqa: ANN001
    import time

    c = env.client
    access = env.app.state.access
    first = c.get("/v1/forecasts/latest")
    version = access.snapshot().fc_version
    time.sleep(1.1)  # written_at has a resolution of one second
    assert c.post("/v1/admin/forecast", headers={"X-API-Key": "s3cret"}).status_code == 200
    again = c.get("/v1/forecasts/latest")
    assert again.json()["init_time"] == first.json()["init_time"] == "2025-06-01T12:00:00Z"
    assert again.json()["written_at"] > first.json()["written_at"]  # not the cached document of the old run
    assert access.snapshot().fc_version != version
    assert again.headers["etag"] != first.headers["etag"]


def test_the_caller_of_a_forced_forecast_reads_the_new_run_at_once(tmp_path: Path) -> None:
    """With no wait for a refresh (refresh_wait_s=0), the route that forces a forecast refreshes the
    snapshot itself: its caller's next request shows the new run, not the previous snapshot."""
    import time

    from tests.service.conftest import make_env

    env = make_env(tmp_path, refresh_wait_s=0.0)
    c = env.client
    first = c.get("/v1/forecasts/latest").json()
    time.sleep(1.1)  # written_at has a resolution of one second
    assert c.post("/v1/admin/forecast", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert c.get("/v1/forecasts/latest").json()["written_at"] > first["written_at"]


def test_new_data_documents_are_built_before_requests_see_them(env) -> None:  # noqa: ANN001
    """The refresh that finds new data builds the frame index and the newest run's metadata before it
    publishes the snapshot, so the burst of requests after a new frame does not wait to build them."""
    from service.routes.info import _meta_key

    c, access = env.client, env.app.state.access
    c.get("/v1/frames")
    env.add_frame(T1)
    env.loop.step()
    snap = access.refresh()
    assert snap.last_complete == T1 and snap.latest_run.init_time == T1
    assert ("frames", *snap.versions) in access.objects and _meta_key(snap.latest_run) in access.objects
    built = access.objects.get(("frames", *snap.versions))
    r = c.get("/v1/frames")
    assert r.content == built.body and r.json()["observed"][-1]["key"] == "20250601T1205"
    assert c.get("/v1/forecasts/latest").json()["init_time"] == "2025-06-01T12:05:00Z"


def test_requests_during_a_slow_refresh_get_the_previous_snapshot(tmp_path: Path) -> None:
    """While the refresh of new data (and its warmers) runs, requests wait at most refresh_wait_s and
    are then answered from the previous snapshot; once it is published they get the new data."""
    import threading
    import time

    from tests.service.conftest import make_env

    env = make_env(tmp_path, refresh_wait_s=0.05)
    c, access = env.client, env.app.state.access
    assert c.get("/v1/frames").json()["observed"][-1]["key"] == "20250601T1200"
    release = threading.Event()
    access.warmers.append(lambda snap: release.wait(30) if snap.last_complete == T1 else None)
    env.add_frame(T1)
    t0 = time.perf_counter()
    stale = c.get("/v1/frames")
    assert time.perf_counter() - t0 < 5 and stale.status_code == 200
    assert stale.json()["observed"][-1]["key"] == "20250601T1200"  # the previous snapshot, not an error
    assert c.get("/v1/tiles/rain/20250601T1200/7/67/45.png").status_code == 200
    release.set()
    deadline = time.time() + 30
    while time.time() < deadline and c.get("/v1/frames").json()["observed"][-1]["key"] != "20250601T1205":
        time.sleep(0.05)
    assert c.get("/v1/frames").json()["observed"][-1]["key"] == "20250601T1205"


def test_replayed_answers_follow_new_data_without_the_routes(env) -> None:  # noqa: ANN001
    """After a new frame and run, the response replay answers a fixed-key tile whose frame is unchanged
    with its stored bytes and a point series with the new data built from memory, without routing
    them again; a 'latest' tile, whose frame changed, goes through the routes."""
    c, access = env.client, env.app.state.access
    calls: list[str] = []
    resolve_async, point_index = access.resolve_async, access.point_index

    async def counting_resolve(key, snap):  # noqa: ANN001, ANN202
        calls.append(key)
        return await resolve_async(key, snap)

    access.resolve_async = counting_resolve
    access.point_index = lambda lat, lon: calls.append(f"point {lat} {lon}") or point_index(lat, lon)
    old_obs, old_lead, latest = "/v1/tiles/rain/20250601T1200/7/67/45.png", "/v1/tiles/rain/20250601T1200+15/7/67/45.png", "/v1/tiles/rain/latest/7/67/45.png"
    point = "/v1/point?lat=46.5&lon=10"
    first = {u: c.get(u) for u in (old_obs, old_lead, latest, point)}
    assert all(r.status_code == 200 for r in first.values())
    env.add_frame(T1)
    env.loop.step()
    assert access.refresh().latest_run.init_time == T1
    calls.clear()
    for u in (old_obs, old_lead):
        again = c.get(u)
        assert again.status_code == 200 and again.content == first[u].content and again.headers["etag"] == first[u].headers["etag"]
        assert again.headers["cache-control"] == first[u].headers["cache-control"]
        assert c.get(u, headers={"If-None-Match": first[u].headers["etag"]}).status_code == 304
    series = c.get(point)
    assert calls == []  # answered by the replay: no key resolution, no lat/lon lookup
    assert series.json()["observed"][-1]["time"] == "2025-06-01T12:05:00Z" and series.json()["forecast_init_time"] == "2025-06-01T12:05:00Z"
    assert series.headers["etag"] != first[point].headers["etag"]
    routed = c.get("/v1/point?lat=46.5&lon=10.0")  # the same cell through the route
    assert calls == ["point 46.5 10.0"]
    assert {**routed.json(), "lon": 10} == series.json() and routed.headers["last-modified"] == series.headers["last-modified"]
    assert c.get(point, headers={"If-None-Match": series.headers["etag"]}).status_code == 304
    new_latest = c.get(latest)
    assert "latest" in calls  # its frame changed: routed
    assert new_latest.content == c.get("/v1/tiles/rain/20250601T1205/7/67/45.png").content


def test_a_burst_of_requests_shares_one_check_of_the_change_stamps(tmp_path: Path) -> None:
    """The change stamps (a file read, a listing and a stat) are read once per stamp_reuse_s, not per
    request; new data show once that time has passed."""
    import time

    from tests.service.conftest import make_env

    env = make_env(tmp_path, stamp_reuse_s=0.3)
    c, access = env.client, env.app.state.access
    reads: list[float] = []
    obs_stamp = access._obs_stamp  # noqa: SLF001 - counted below
    access._obs_stamp = lambda: reads.append(time.monotonic()) or obs_stamp()
    assert c.get("/v1/frames").json()["observed"][-1]["key"] == "20250601T1200"
    time.sleep(0.35)
    reads.clear()
    t0 = time.monotonic()
    for _ in range(20):
        assert access.current() is not None
    assert len(reads) == 1 or time.monotonic() - t0 > 0.3  # one check for the burst
    env.add_frame(T1)
    time.sleep(0.35)
    reads.clear()
    t0 = time.monotonic()
    for _ in range(20):  # seen once the reused check has expired; the verdict is reused as well
        assert access.current() is None
    assert len(reads) == 1 or time.monotonic() - t0 > 0.3
    assert c.get("/v1/frames").json()["observed"][-1]["key"] == "20250601T1205"


def test_a_request_arriving_during_a_long_refresh_does_not_wait_for_it(tmp_path: Path) -> None:
    """When the running refresh has taken longer than refresh_wait_s already, a request is answered
    from the previous snapshot at once (no wait, no second refresh); with none running, it refreshes."""
    import asyncio
    import dataclasses
    import time

    from tests.service.conftest import make_env

    access = make_env(tmp_path, refresh_wait_s=0.2).app.state.access
    previous = dataclasses.replace(access.snapshot(), obs_stamp=b"stale")  # its stores changed since
    access._snapshot = previous  # noqa: SLF001
    calls: list[bool] = []
    refresh = access.refresh
    access.refresh = lambda force=False: calls.append(force) or refresh(force)
    access._refresh_started = time.monotonic() - 1.0  # noqa: SLF001 - a refresh running for a second
    t0 = time.perf_counter()
    assert asyncio.run(access.snapshot_async()) is previous
    assert calls == [] and time.perf_counter() - t0 < access.settings.refresh_wait_s
    access._refresh_started = None  # noqa: SLF001 - none running: this request starts one
    asyncio.run(access.snapshot_async())
    assert calls == [False]
    assert access.current() is not None and access.current() is not previous

def test_fixed_forecast_keys_in_use_are_resolved_before_a_new_run_is_published(env) -> None:  # noqa: ANN001
    """Tiles of an older run's leads keep being requested after a new run: their keys are resolved
    again by the refresh, not by the first request after it (a store read each)."""
    c, access = env.client, env.app.state.access
    assert c.get("/v1/tiles/rain/20250601T1200+15/7/67/45.png").status_code == 200
    env.add_frame(T1)
    env.loop.step()
    snap = access.refresh()
    assert snap.latest_run.init_time == T1
    ref = access.refs.get((snap.fc_version, "20250601T1200+15"))
    assert ref is not None and ref.time == T0 and ref.lead_minutes == 15 and ref.written_at is not None


def test_the_first_snapshot_is_warmed_too(env) -> None:  # noqa: ANN001
    """create_app takes a first snapshot (the metrics collector reads the data ages): the warmers are
    registered before it, so the first requests find the index and the point stacks built."""
    access = env.app.state.access
    snap = access._snapshot  # noqa: SLF001 - the one taken at start-up, before any request
    assert snap is not None
    assert ("frames", *snap.versions) in access.objects
    keys = access.stacks.keys()
    assert ("fc-stack", snap.latest_run.key, snap.latest_run.written_at) in keys
    assert any(k[0] == "obs-stack" and k[1] == snap.obs_version for k in keys)


def test_point_stacks_are_read_before_the_new_snapshot_is_published(env) -> None:  # noqa: ANN001
    access = env.app.state.access
    env.add_frame(T1)
    env.loop.step()
    snap = access.refresh()
    keys = list(access.stacks._data)  # noqa: SLF001 - what the refresh read
    assert any(k[0] == "obs-stack" and k[1] == snap.obs_version and k[2] == T1 for k in keys), keys
    assert ("fc-stack", snap.latest_run.key, snap.latest_run.written_at) in keys


def test_series_of_the_cells_in_use_are_built_before_the_new_snapshot_is_published(env) -> None:  # noqa: ANN001
    """After a new frame and run, the refresh builds the series of the cells requested before (not the
    first request of each, on the event loop), the same bytes the route gives; a new run alone
    rebuilds only the forecast part of a cell."""
    from service.routes.point import series_tail

    c, access, settings = env.client, env.app.state.access, env.app.state.settings
    used = [(46.5, 10.0), (46.2, 9.6)]
    cells = [access.point_index(lat, lon) for lat, lon in used]
    for lat, lon in used:
        assert c.get(f"/v1/point?lat={lat}&lon={lon}").status_code == 200
    unused = access.point_index(46.8, 10.4)
    assert unused not in cells
    env.add_frame(T1)
    env.loop.step()
    snap = access.refresh()
    assert snap.latest_run.init_time == T1
    for row, col in cells:
        built = access.points.get(("point", *snap.versions, row, col))
        assert built is not None and built == series_tail(access, settings, snap, row, col)
    assert ("point", *snap.versions, *unused) not in access.points
    for lat, lon in used:
        body = c.get(f"/v1/point?lat={lat}&lon={lon}").json()
        assert body["observed"][-1]["time"] == "2025-06-01T12:05:00Z" and body["forecast_init_time"] == "2025-06-01T12:05:00Z"
    row, col = cells[0]
    observed = access.points.get(("point-obs", snap.obs_version, row, col))
    env.loop.step(force=True)  # the same init time again: a new forecast version, the same frames
    rerun = access.refresh()
    assert rerun.obs_version == snap.obs_version and rerun.fc_version != snap.fc_version
    assert access.points.get(("point-obs", rerun.obs_version, row, col)) is observed
    assert ("point-fc", rerun.fc_version, row, col) in access.points
    assert access.points.get(("point", *rerun.versions, row, col)) == series_tail(access, settings, rerun, row, col)


def test_new_frame_keeps_the_cached_tiles_of_other_frames(env, monkeypatch) -> None:  # noqa: ANN001
    """Cached tiles are keyed on what their frame shows, not on the store versions: a new frame or
    run renders only its own tiles, while a replaced frame, late lightning and a rewritten run
    render theirs again."""
    import time

    import numpy as np

    from service import maps

    c, access = env.client, env.app.state.access
    renders: list[str] = []
    render_tile = maps.render_tile
    monkeypatch.setattr(maps, "render_tile", lambda access, ref, *a: renders.append(ref.key) or render_tile(access, ref, *a))
    old_obs, old_lead = "/v1/tiles/rain/20250601T1200/7/67/45.png", "/v1/tiles/rain/20250601T1200+15/7/67/45.png"
    light = "/v1/tiles/lightning/20250601T1205/7/67/45.png"
    first = {u: c.get(u) for u in (old_obs, old_lead)}
    assert all(r.status_code == 200 for r in first.values())
    renders.clear()
    rain = env.writer.window(T0, 1)["rain_rate"].values[0]
    assert env.writer.append(xr_frame(env.writer, T1, rain))  # a new frame, rain only: its lightning comes later
    env.loop.step()
    for u, r in first.items():
        again = c.get(u)
        assert again.status_code == 200 and again.content == r.content and again.headers["etag"] == r.headers["etag"]
    assert renders == []  # served from the tile cache: nothing rendered again
    # a replaced frame renders again (nowcast import --overwrite)
    wet = np.full(access.grid().shape, 50.0, dtype=np.float32)
    env.writer.append(xr_frame(env.writer, T0, wet), overwrite=True)
    replaced = c.get(old_obs)
    assert replaced.headers["etag"] != first[old_obs].headers["etag"] and renders == ["20250601T1200"]
    # late lightning of a frame renders its lightning tile again, not its rain tile
    no_light = c.get(light)
    rain_tile = c.get("/v1/tiles/rain/20250601T1205/7/67/45.png")
    renders.clear()
    assert env.writer.append_lightning(T1, np.ones(access.grid().shape, dtype=np.float32))
    assert c.get(light).headers["etag"] != no_light.headers["etag"]
    assert c.get("/v1/tiles/rain/20250601T1205/7/67/45.png").headers["etag"] == rain_tile.headers["etag"]
    assert renders == ["20250601T1205"]  # the lightning tile only
    # a rewritten run (admin re-forecast of the same init time) renders its leads again
    lead = "/v1/tiles/rain/20250601T1205+15/7/67/45.png"
    before = c.get(lead)
    time.sleep(1.1)  # written_at has a resolution of one second
    assert c.post("/v1/admin/forecast", headers={"X-API-Key": "s3cret"}).status_code == 200
    renders.clear()
    assert c.get(lead).status_code == 200 and renders == ["20250601T1205+15"]
    assert c.get(lead).content == before.content  # same inputs, same forecast: re-rendered all the same


def xr_frame(store, t: pd.Timestamp, values):  # noqa: ANN001, ANN201
    import xarray as xr

    g = store.grid
    return xr.DataArray(values[None], dims=("time", "y", "x"), coords={"time": [t.to_datetime64()], "y": g.y, "x": g.x})


def test_change_stamp_sees_every_append(env) -> None:  # noqa: ANN001
    """The cheap change stamps must change whenever the store versions do (guards the store layout they read)."""
    access = env.app.state.access
    snap = access.snapshot()
    assert snap.obs_stamp is not None and snap.fc_stamp is not None  # local stores: stamped
    assert access.current() is snap
    env.add_frame(T1)
    assert access.current() is None  # stale at once, without waiting for store_poll_s
    new = access.snapshot()
    assert new.obs_version != snap.obs_version and new.last_complete == T1
    env.loop.step()
    assert access.current() is None
    assert access.snapshot().latest_run.init_time == T1


# -- 400 messages and OpenAPI patterns --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("/v1/tiles/rain/00000101T0000/6/33/22.png", "malformed time key '00000101T0000': use YYYYmmddTHHMM"),
        ("/v1/tiles/rain/20250230T1200/6/33/22.png", "2025-02-30 does not exist"),
        ("/v1/maps/rain/20251301T1200", "malformed time key"),
        ("/v1/forecasts/0000-01-01T00:00", "use YYYYmmddTHHMM[SS][Z] (e.g. 20250601T1200) or ISO 8601"),
        ("/v1/forecasts/20250230T1200", "malformed init time"),
        ("/v1/forecasts/2025-06-01T25:00", "malformed init time"),
    ],
)
def test_400_says_what_format_is_expected(shared_env, url: str, needle: str) -> None:  # noqa: ANN001
    r = shared_env.client.get(url)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert needle in detail
    assert "out of range" not in detail and "You might want" not in detail and "Timestamp" not in detail


def test_openapi_declares_time_patterns_that_match_the_handlers(shared_env) -> None:  # noqa: ANN001
    spec = shared_env.client.get("/openapi.json").json()
    params = {
        (path, p["name"]): p["schema"]
        for path, item in spec["paths"].items()
        for op in item.values()
        for p in op.get("parameters", [])
    }
    key_pattern = params[("/v1/tiles/{layer}/{time_key}/{z}/{x}/{y}.png", "time_key")]["pattern"]
    assert params[("/v1/maps/{layer}/{time_key}", "time_key")]["pattern"] == key_pattern
    init_pattern = params[("/v1/forecasts/{init_time}", "init_time")]["pattern"]
    for good in ("latest", "latest+15", "20250601T1200", "20250601T1200+75"):
        assert re.match(key_pattern, good), good
    for bad in ("noon", "00000101T0000", "20251301T1200", "20250601T2460", "20250601T1200+", "latest-5"):
        assert not re.match(key_pattern, bad), bad
    for good in ("20250601T1200", "20250601T120000Z", "2025-06-01T12:00:00Z", "2025-06-01 12:00", "2025-06-01T12:00+02:00"):
        assert re.match(init_pattern, good), good
    for bad in ("yesterday", "0000-01-01T00:00", "2025-13-01T00:00", "20250601"):
        assert not re.match(init_pattern, bad), bad
    # what the pattern admits, the handler accepts (200 or 404), never a 5xx
    assert shared_env.client.get(f"/v1/forecasts/{LAST}").status_code == 200
    assert shared_env.client.get("/v1/tiles/rain/21991231T2355/6/33/22.png").status_code == 404


# -- request limits -----------------------------------------------------------------------------


def test_app_limits_answer_414_431_413(shared_env) -> None:  # noqa: ANN001
    c = shared_env.client
    r = c.get("/v1/point?lat=46.5&lon=10&pad=" + "a" * 9000)
    assert r.status_code == 414 and "query string" in r.json()["detail"]
    r = c.get("/v1/frames", headers={f"x-pad-{i}": "b" * 1000 for i in range(17)})
    assert r.status_code == 431 and "headers" in r.json()["detail"]
    r = c.post("/v1/admin/forecast", content=b"x" * 70_000, headers={"X-API-Key": "s3cret"})
    assert r.status_code == 413 and "at most 65536 bytes" in r.json()["detail"]

    def chunks():  # noqa: ANN202 - no Content-Length: chunked
        for _ in range(20):
            yield b"y" * 5000

    r = c.post("/v1/admin/forecast", content=chunks(), headers={"X-API-Key": "wrong"})
    assert r.status_code == 413
    r = c.post("/v1/admin/forecast", content=b"z" * 100, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401  # a small body goes on to the route
    assert c.get("/v1/frames").status_code == 200


def _raw(port: int, payload: bytes, read_timeout: float = 20.0) -> bytes:
    """Send ``payload`` whole (as a plain client does), then read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(payload)
        out = b""
        while b"\r\n\r\n" not in out or len(out) < out.find(b"\r\n\r\n") + 4 + _length(out):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def _length(head: bytes) -> int:
    m = re.search(rb"content-length: (\d+)", head, re.I)
    return int(m.group(1)) if m else 0


@contextlib.contextmanager
def _served(env, port: int, **overrides):  # noqa: ANN001, ANN003, ANN202
    """``env``'s app served by uvicorn with service.server's protocol (``uvicorn_config``) in a
    thread on ``port``, once it answers; stopped on exit."""
    import threading
    import time

    import httpx
    import uvicorn

    from service.server import uvicorn_config

    server = uvicorn.Server(uvicorn_config(env.app, env.settings, port=port, lifespan="off", **overrides))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/legend/rain", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def test_oversized_requests_get_an_answer_not_a_reset(shared_env, free_port) -> None:  # noqa: ANN001
    """Through uvicorn with service.server's protocol: 200 KB query, 500 KB header, 5 MB body."""
    import httpx

    port = free_port()
    with _served(shared_env, port):
        big_query = b"GET /v1/point?lat=46.5&lon=10&pad=" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        out = _raw(port, big_query)
        assert out.startswith(b"HTTP/1.1 414 "), out[:200]
        assert b"request line longer than" in out
        big_header = b"GET /v1/frames HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"b" * 500_000 + b"\r\n\r\n"
        out = _raw(port, big_header)
        assert out.startswith(b"HTTP/1.1 431 "), out[:200]
        big_body = b"POST /v1/admin/forecast HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n" + b"c" * 5_000_000
        out = _raw(port, big_body)
        assert out.startswith(b"HTTP/1.1 413 "), out[:200]
        assert b"at most 65536 bytes" in out
        # a query between the app limit and the parser's buffer: the app's 414
        out = _raw(port, b"GET /v1/point?lat=46.5&lon=10&pad=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 414 "), out[:200]
        # and normal requests still work
        assert httpx.get(f"http://127.0.0.1:{port}/v1/frames", timeout=10).status_code == 200
        bad = _raw(port, b"GARBAGE\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400 ")  # malformed (not oversized): uvicorn's own answer


def test_closed_connections_leave_no_garbage_cycles(shared_env, free_port) -> None:  # noqa: ANN001
    """A closed connection's transport and protocol are freed by reference counting, closed cleanly
    or reset, not left as cycles for the cyclic GC (whose full collections stall every request in flight)."""
    import gc
    import socket
    import struct
    import time

    port = free_port()
    # a 1-s keep-alive: a reset connection's keep-alive timer fires (and is dropped by the loop) within the test
    with _served(shared_env, port, timeout_keep_alive=1):
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds unreachable is kept in gc.garbage
        try:
            for _ in range(20):
                out = _raw(port, b"GET /v1/legend/rain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert out.startswith(b"HTTP/1.1 200 "), out[:100]
            for _ in range(20):  # keep-alive connections the client resets (as a load tool stopping does)
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(b"GET /v1/legend/rain HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
            time.sleep(1.5)  # the server sees the closes, and the keep-alive timers have fired
            gc.collect()
            cycles = [type(o).__name__ for o in gc.garbage if "Transport" in type(o).__name__ or "Protocol" in type(o).__name__]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert cycles == []


# -- imports before threads (issue 13 item 5) ----------------------------------------------------


def test_create_app_imports_heavy_modules_before_threads(tmp_path: Path) -> None:
    """In a fresh interpreter: create_app (with an inference loop that has not run yet) imports the
    modules that request threads and the loop import lazily, so the loop's first forecast and the
    first requests, started together in many threads, all succeed (once failed with ``cannot import
    name 'annotate' from partially initialized module 'dask.base'``)."""
    script = textwrap.dedent(
        f"""
        import sys, threading, importlib.util
        sys.path.insert(0, {str(ROOT)!r})
        import pandas as pd
        from nowcast.store import ObservationStore
        from tests.service.conftest import T0, N_FRAMES, append_synthetic, small_grid
        store = ObservationStore.create({str(tmp_path / "obs.zarr")!r}, small_grid())
        append_synthetic(store, pd.date_range(end=T0, periods=N_FRAMES, freq="5min"))
        from service.settings import ServiceSettings
        from service.inference import InferenceLoop
        from service.app import WARM_MODULES, INFERENCE_MODULES, create_app
        settings = ServiceSettings(store={str(tmp_path / "obs.zarr")!r}, forecast_store={str(tmp_path / "fc.zarr")!r}, model="extrapolation")
        loop = InferenceLoop(settings)
        wanted = [m for m in WARM_MODULES + INFERENCE_MODULES if importlib.util.find_spec(m.split(".")[0])]
        before = [m for m in wanted if m in sys.modules]
        app = create_app(settings, loop)
        missing = [m for m in wanted if m not in sys.modules]
        from fastapi.testclient import TestClient
        client = TestClient(app)
        errors = []
        def forecast():
            try:
                loop.step()
            except Exception as exc:
                errors.append("loop: " + repr(exc))
        def request(i):
            try:
                r = client.get(f"/v1/tiles/{{('rain', 'lightning')[i % 2]}}/latest/7/{{66 + i % 3}}/45.png")
                assert r.status_code == 200, r.text
                r = client.get("/v1/maps/rain/latest?format=nc")
                assert r.status_code == 200, r.text
            except Exception as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=forecast)] + [threading.Thread(target=request, args=(i,)) for i in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("RESULT", {{"before": before, "missing": missing, "errors": errors, "forecast": loop.status.last_error}})
        """
    )
    env = {"PYSTEPS_SILENT_IMPORT": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, f"exit {proc.returncode}: {proc.stdout[-1000:]} {proc.stderr[-3000:]}"
    result = ast.literal_eval(line[len("RESULT ") :])
    assert "pysteps" not in result["before"]  # create_app is what imports it
    assert result["missing"] == [], f"imported lazily, after threads may start: {result['missing']}"
    assert result["errors"] == [] and result["forecast"] is None


def test_keep_alive_answers_are_not_held_by_nagle(shared_env) -> None:  # noqa: ANN001
    """A listening socket made without IPPROTO_TCP (as `nowcast serve` once did) gets no TCP_NODELAY from
    asyncio: each keep-alive answer (head and body written apart) then waited ~40 ms for a delayed ACK.
    The API's protocol sets TCP_NODELAY itself, and `nowcast serve` binds a TCP socket."""
    import statistics
    import threading
    import time

    import httpx
    import uvicorn

    from cli.commands.serve import bind
    from service.server import uvicorn_config

    probe = bind("127.0.0.1", 0)
    assert probe.proto == socket.IPPROTO_TCP
    probe.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0: asyncio leaves Nagle on
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn_config(shared_env.app, shared_env.settings, lifespan="off"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    client.get("/v1/legend/rain")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            times = []
            for _ in range(20):  # one keep-alive connection
                t0 = time.perf_counter()
                assert client.get("/v1/legend/rain").status_code == 200
                times.append(time.perf_counter() - t0)
        assert statistics.median(times) < 0.025, times
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_dashboard_and_static_assets_answer_304(shared_env) -> None:  # noqa: ANN001
    c = shared_env.client
    for url in ("/", "/static/app.js"):
        r = c.get(url)
        assert r.status_code == 200 and r.headers["etag"] and r.headers["last-modified"]
        assert c.get(url, headers={"If-None-Match": r.headers["etag"]}).status_code == 304, url
    assert c.get("/").headers["cache-control"] == "no-cache"


def test_response_replay_is_bounded_and_keeps_only_cacheable_answers(env) -> None:  # noqa: ANN001
    c, replay = env.client, env.app.state.replay
    assert replay.max_items >= 1024 and replay.max_bytes is not None
    url = "/v1/tiles/rain/latest/7/67/45.png"
    first = c.get(url)
    hits = replay.hits
    assert c.get(url).content == first.content and replay.hits == hits + 1  # replayed
    assert c.get("/v1/tiles/rain/20250601T1100/7/67/45.png").status_code == 404
    assert c.get("/v1/status").status_code == 200
    assert c.post("/v1/admin/forecast").status_code == 401
    stored = {k[0] for k in list(replay._data)}  # noqa: SLF001 - what the replay holds
    assert stored == {url}  # errors, status and admin are never replayed
    assert "nowcast_cache_hits" in c.get("/metrics").text


def test_new_frame_and_run_are_prewarmed_for_tiles(env) -> None:  # noqa: ANN001
    """A new frame's and a new run's colour levels, and the older frames of the index, are decoded
    in the background, before any tile request."""
    import time

    access = env.app.state.access
    env.add_frame(T1)
    env.loop.step()
    snap = access.snapshot()  # sees the new versions: starts the prewarm
    assert snap.last_complete == T1 and snap.latest_run.init_time == T1
    from service.data import FrameRef

    def key(ref: FrameRef, layer: str) -> tuple:
        return ("levels", snap.content_version(ref, layer), ref.key, layer)

    run = snap.latest_run
    layers = ("rain", "lightning")
    wanted = [key(FrameRef(T1, None, True), layer) for layer in layers]
    wanted += [key(FrameRef(T1, m, True, written_at=run.written_at), layer) for m in (5, 10, 15, 30, 60, 75) for layer in layers]
    wanted += [key(FrameRef(pd.Timestamp("2025-06-01T12:00"), None, True), layer) for layer in layers]  # animation frames
    deadline = time.time() + 30
    while time.time() < deadline and not all(k in access.fields for k in wanted):
        time.sleep(0.1)
    assert all(k in access.fields for k in wanted), [k for k in wanted if k not in access.fields]


def test_prewarm_slices_the_point_stacks_instead_of_reading_each_field(env) -> None:  # noqa: ANN001
    """The newest run's leads and the last hour's frames are decoded for tiles from the stacks the
    refresh read for the point series (no store read per field), and give exactly the fields a
    store read gives."""
    import time

    import numpy as np

    from service.data import FrameRef

    access = env.app.state.access
    fc = access.forecasts()
    reads: list[int] = []
    read_lead = fc.read_lead
    fc.read_lead = lambda *a, **k: reads.append(1) or read_lead(*a, **k)
    env.add_frame(T1)
    env.loop.step()
    snap = access.snapshot()
    run = snap.latest_run
    assert run.init_time == T1
    refs = [FrameRef(T1, m, True, written_at=run.written_at) for m in run.lead_minutes()] + [FrameRef(T1, None, True), FrameRef(T0, None, True)]
    wanted = [("levels", snap.content_version(r, layer), r.key, layer) for r in refs for layer in ("rain", "lightning")]
    deadline = time.time() + 30
    while time.time() < deadline and not all(k in access.fields for k in wanted):
        time.sleep(0.05)
    assert all(k in access.fields for k in wanted)
    assert reads == []  # every lead came from the run's stack
    sliced = {(r, layer): access.fields.get(("field", snap.content_version(r, layer), r.key, layer)) for r in refs for layer in ("rain", "lightning")}
    access.fields.clear()
    for (r, layer), field in sliced.items():
        stored = access.field(r, layer, snap.content_version(r, layer))  # read from the store
        assert field.dtype == stored.dtype == np.float32
        np.testing.assert_array_equal(field, stored)
    assert len(reads) == len(run.lead_minutes()) * 2  # the comparison did read them


def test_previous_runs_leads_are_sliced_from_its_stack_after_a_new_run(env) -> None:  # noqa: ANN001
    """After a new run, a dashboard still animating the previous run gets its leads from that
    run's stack in memory (read by the refresh of its time), not one store read per lead."""
    import numpy as np

    from service.data import FrameRef

    access = env.app.state.access
    fc = access.forecasts()
    env.add_frame(T1)
    env.loop.step()
    previous = access.snapshot().latest_run
    assert previous.init_time == T1
    env.add_frame(T1 + pd.Timedelta("5min"))
    env.loop.step()
    snap = access.snapshot()
    assert snap.latest_run.init_time != previous.init_time
    reads: list[int] = []
    read_lead = fc.read_lead
    fc.read_lead = lambda *a, **k: reads.append(1) or read_lead(*a, **k)
    ref = FrameRef(previous.init_time, previous.lead_minutes()[-1], True, written_at=previous.written_at)
    sliced = access.field_from_stacks(ref, "rain", snap)
    assert sliced is not None and reads == []
    np.testing.assert_array_equal(sliced, read_lead(previous.init_time, pd.Timedelta(minutes=ref.lead_minutes)))
    rewritten = FrameRef(previous.init_time, ref.lead_minutes, True, written_at=previous.written_at + pd.Timedelta("1s"))
    assert access.field_from_stacks(rewritten, "rain", snap) is None  # another write of that run: not this stack


def test_startup_heap_is_kept_out_of_the_cyclic_gc(tmp_path: Path) -> None:
    """Full collections of the start-up heap (~200k objects, ~100 ms) stalled requests in flight: frozen while serving."""
    import gc

    from tests.service.conftest import make_env

    gc.unfreeze()
    e = make_env(tmp_path)  # enters the app's lifespan
    try:
        assert gc.get_freeze_count() > 1000
    finally:
        e.client.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0
