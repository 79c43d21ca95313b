"""The dashboard in a real headless Chromium: loads, coastlines/borders drawn, slider changes frames, click draws the chart."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (run scripts/install-browser.sh)"),
]

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def png_rgb(data: bytes):  # -> np.ndarray (h, w, 3) int
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def wettest_point(env) -> tuple[float, float]:  # noqa: ANN001
    """lat/lon of the cell with the most rain in the latest frame."""
    import numpy as np
    from pyproj import Transformer

    rain = env.writer.window("2025-06-01T12:00", 1)["rain_rate"].values[0]
    row, col = np.unravel_index(np.nanargmax(rain), rain.shape)
    g = env.writer.grid
    lon, lat = Transformer.from_crs(g.crs, "EPSG:4326", always_xy=True).transform(g.x[col], g.y[row])
    return float(lat), float(lon)


def test_dashboard_end_to_end(env, live_server) -> None:  # noqa: ANN001
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    tile_requests: list[str] = []
    overlay_requests: list[str] = []
    external: list[str] = []
    with live_server(env.app) as url, sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=ARGS, headless=True, viewport={"width": 1280, "height": 800}
        )
        try:
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            def on_request(req) -> None:  # noqa: ANN001
                if not req.url.startswith(url) and not req.url.startswith("data:"):
                    external.append(req.url)
                if "/v1/tiles/" in req.url:
                    tile_requests.append(req.url)
                if "/v1/overlays/" in req.url:
                    overlay_requests.append(req.url)

            page.on("request", on_request)
            page.goto(url + "/", wait_until="networkidle")
            page.wait_for_selector("body[data-ready='1']", timeout=15000)
            label = page.locator("#frame-label")
            first_key = label.get_attribute("data-frame-key")
            assert first_key == "20250601T1200"  # the latest observation is shown first
            assert "observed" in (label.text_content() or "")
            banner = page.locator("#age-banner").text_content() or ""
            assert "old" in banner and "last frame" in banner
            assert page.locator(".legend-item").count() >= 15
            # tiles of the shown frame were requested and rendered
            page.wait_for_function("document.querySelectorAll('.leaflet-tile-loaded').length > 0", timeout=15000)
            assert any(f"/v1/tiles/rain/{first_key}/" in u for u in tile_requests)

            # coastlines and borders: GeoJSON from the API drawn as SVG paths over the map
            page.wait_for_selector("body[data-overlays='2']", timeout=15000)
            assert any("/v1/overlays/coastlines" in u for u in overlay_requests)
            assert any("/v1/overlays/borders" in u for u in overlay_requests)
            map_box = page.locator("#map").bounding_box()
            assert map_box is not None
            for cls in ("overlay-coastlines", "overlay-borders"):
                path = page.locator(f"path.{cls}")
                assert path.count() == 1, cls
                b = path.bounding_box()
                assert b is not None and b["width"] > 50 and b["height"] > 50, (cls, b)
                # the lines lie over the map, not off in a corner of the page
                assert b["x"] < map_box["x"] + map_box["width"] and b["x"] + b["width"] > map_box["x"], (cls, b, map_box)
            # at a border point (Splugen pass, CH/IT) the pixels change when the overlay pane is hidden:
            # the line is drawn where the map puts that lon/lat; inland (Bergamo Alps) nothing changes
            def overlay_pixels(lat: float, lon: float) -> int:
                p = page.evaluate(f"(() => {{ const p = window.nowcastMap.latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y]; }})()")
                assert 6 <= p[0] <= map_box["width"] - 6 and 6 <= p[1] <= map_box["height"] - 6, p
                clip = {"x": map_box["x"] + p[0] - 5, "y": map_box["y"] + p[1] - 5, "width": 11, "height": 11}
                shown = png_rgb(page.screenshot(clip=clip))
                page.evaluate("window.nowcastMap.getPane('basemap').style.display = 'none'")
                hidden = png_rgb(page.screenshot(clip=clip))
                page.evaluate("window.nowcastMap.getPane('basemap').style.display = ''")
                return int((abs(shown - hidden).sum(axis=-1) > 60).sum())

            assert overlay_pixels(46.5056, 9.3303) >= 3
            assert overlay_pixels(46.0, 10.0) == 0

            # move the slider to the last forecast lead: the label and tile URLs change
            n = int(page.locator("#slider").get_attribute("max") or 0)
            assert n == 5 + 6  # 6 observed frames + 6 forecast leads, 0-based
            page.locator("#slider").fill(str(n))
            page.wait_for_function("document.querySelector('#frame-label').dataset.frameKey === '20250601T1200+75'")
            assert "forecast +75 min" in (label.text_content() or "")
            page.wait_for_timeout(500)
            assert any("/v1/tiles/rain/20250601T1200+75/" in u for u in tile_requests)

            # play advances frames
            page.locator("#play").click()
            page.wait_for_function("document.querySelector('#frame-label').dataset.frameKey !== '20250601T1200+75'", timeout=5000)
            page.locator("#play").click()

            # the lightning probability layer is on from the start, with its legend; the toggle removes it
            assert page.locator("#lightning-toggle").is_checked()
            assert any("/v1/tiles/lightning/" in u for u in tile_requests)
            assert page.locator(".legend-row[data-layer='lightning'] .legend-item").count() == 9
            assert page.locator("#map .leaflet-layer").count() == 2
            page.locator("#lightning-toggle").uncheck()
            assert page.locator("#map .leaflet-layer").count() == 1
            page.locator("#lightning-toggle").check()
            assert page.locator("#map .leaflet-layer").count() == 2
            assert "model persistence" in (page.locator("#model-text").text_content() or "")
            assert page.locator("#model-card").is_hidden()  # persistence has no model card

            # click on the wettest cell of the latest frame: the point chart appears with its values
            lat, lon = wettest_point(env)
            box = page.locator("#map").bounding_box()
            assert box is not None
            pt = page.evaluate(f"(() => {{ const p = window.nowcastMap.latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y]; }})()")
            with page.expect_response(lambda r: "/v1/point" in r.url) as point_info:
                page.mouse.click(box["x"] + pt[0], box["y"] + pt[1])
            page.wait_for_selector("#chart[data-drawn='1']", timeout=10000)
            assert page.locator("#chart").is_visible()
            assert "forecast by persistence" in (page.locator("#chart-caption").text_content() or "")
            series = point_info.value.json()
            assert series["observed"][-1]["rain_rate"] > 1.0  # the clicked cell is raining
            # the point panel lists every forecast lead with rain rate and lightning probability
            rows = page.locator("#point-table tbody tr")
            assert rows.count() == len(series["forecast"]) == 6
            first = rows.nth(0).locator("td").all_text_contents()
            fc0 = series["forecast"][0]
            assert first[0] == "+5 min" and float(first[2]) == pytest.approx(fc0["rain_rate"], abs=0.051 if fc0["rain_rate"] < 10 else 0.51)
            assert float(first[3]) == pytest.approx(100 * fc0["lightning_probability"], abs=0.051 if fc0["lightning_probability"] < 0.1 else 0.51)
            page.locator("#slider").fill("3")
            page.wait_for_timeout(800)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
            assert not errors, errors
            assert not external, f"requests outside the app (no CDN allowed): {external}"
        finally:
            ctx.close()
    assert os.path.getsize(ARTIFACTS / "dashboard.png") > 10_000


def test_dashboard_names_the_champion_and_shows_lightning_probability(tmp_path, helpers, live_server) -> None:  # noqa: ANN001
    """With the live defaults (shipped synthetic ConvLSTM as registry champion): model, version and card
    link in the header, what the lightning probability means, and the 15 leads at a point."""
    from playwright.sync_api import sync_playwright

    e = helpers.env(tmp_path, model="extrapolation", model_registry=str(tmp_path / "models"), shipped_champion="synthetic", lead_minutes=list(range(5, 80, 5)))
    try:
        with live_server(e.app) as url, sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), args=ARGS, headless=True, viewport={"width": 1280, "height": 800})
            try:
                page = ctx.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda err: errors.append(str(err)))
                page.goto(url + "/", wait_until="networkidle")
                page.wait_for_selector("body[data-model='convlstm']", timeout=15000)
                version = e.loop.model_status.version
                assert f"model convlstm {version}, registry champion" in (page.locator("#model-text").text_content() or "")
                card = page.locator("#model-card")
                assert card.is_visible() and card.get_attribute("href") == "/v1/model/card"
                assert page.locator("#model-fallback").is_hidden()
                assert "at least one lightning stroke" in (page.locator("#lightning-note").text_content() or "")
                lat, lon = wettest_point(e)
                box = page.locator("#map").bounding_box()
                pt = page.evaluate(f"(() => {{ const p = window.nowcastMap.latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y]; }})()")
                page.mouse.click(box["x"] + pt[0], box["y"] + pt[1])
                page.wait_for_selector("#point-table:not([hidden])", timeout=10000)
                rows = page.locator("#point-table tbody tr")
                assert rows.count() == 15
                assert rows.nth(14).locator("td").first.text_content() == "+75 min"
                probs = [float(rows.nth(i).locator("td").nth(3).text_content() or "nan") for i in range(15)]
                assert all(0.0 <= p <= 100.0 for p in probs)
                page.screenshot(path=str(ARTIFACTS / "dashboard-convlstm.png"))
                assert not errors, errors
            finally:
                ctx.close()
    finally:
        e.client.__exit__(None, None, None)


def test_dashboard_says_when_the_fallback_serves(tmp_path, helpers, live_server, monkeypatch) -> None:  # noqa: ANN001
    """Shipped weights missing: extrapolation serves and the header says it is the fallback, and why."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setattr("nowcast.models.weights.WEIGHTS_DIR", tmp_path / "no-weights")
    e = helpers.env(tmp_path, model="extrapolation", model_registry=str(tmp_path / "models"), shipped_champion="synthetic")
    try:
        with live_server(e.app) as url, sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), args=ARGS, headless=True, viewport={"width": 1280, "height": 800})
            try:
                page = ctx.new_page()
                page.goto(url + "/", wait_until="networkidle")
                page.wait_for_selector("body[data-model='extrapolation']", timeout=15000)
                fb = page.locator("#model-fallback")
                assert fb.is_visible()
                assert "fallback: no champion in the model registry" in (fb.text_content() or "")
                assert page.locator("#model-card").is_hidden()
            finally:
                ctx.close()
    finally:
        e.client.__exit__(None, None, None)
