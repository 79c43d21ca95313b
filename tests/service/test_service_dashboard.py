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

            # lightning toggle adds the lightning tile layer
            page.locator("#lightning-toggle").check()
            page.wait_for_timeout(500)
            assert any("/v1/tiles/lightning/" in u for u in tile_requests)

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
            page.locator("#slider").fill("3")
            page.wait_for_timeout(800)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
            assert not errors, errors
            assert not external, f"requests outside the app (no CDN allowed): {external}"
        finally:
            ctx.close()
    assert os.path.getsize(ARTIFACTS / "dashboard.png") > 10_000
