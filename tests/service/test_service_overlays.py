"""Coastline / border overlays: the GeoJSON route and the lines on the PNG maps (test grid: the Alps)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from nowcast import plotting


def _png(content: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB")).astype(int)


def _count(img: np.ndarray, colour: str, tol: int = 60) -> int:
    target = np.array([int(colour[k : k + 2], 16) for k in (1, 3, 5)])
    return int((np.abs(img - target).sum(axis=-1) < tol).sum())


@pytest.mark.parametrize("layer", ["coastlines", "borders"])
def test_overlay_geojson_covers_the_domain(shared_env, layer: str) -> None:  # noqa: ANN001
    r = shared_env.client.get(f"/v1/overlays/{layer}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    assert "max-age" in r.headers["cache-control"]
    doc = r.json()
    (feat,) = doc["features"]
    assert feat["geometry"]["type"] == "MultiLineString" and feat["properties"]["layer"] == layer
    pts = np.concatenate([np.asarray(c, dtype=float) for c in feat["geometry"]["coordinates"]])
    lon0, lat0, lon1, lat1 = shared_env.app.state.access.bbox_lonlat()
    # lines within the domain + 1 degree margin (+ one vertex beyond), and some inside the domain itself
    assert lon0 - 1.6 < pts[:, 0].min() and pts[:, 0].max() < lon1 + 1.6
    assert lat0 - 1.6 < pts[:, 1].min() and pts[:, 1].max() < lat1 + 1.6
    inside = (pts[:, 0] > lon0) & (pts[:, 0] < lon1) & (pts[:, 1] > lat0) & (pts[:, 1] < lat1)
    assert inside.sum() > 20


def test_borders_pass_through_known_places(shared_env) -> None:  # noqa: ANN001
    """Swiss-Italian border at the Splügen pass; Lake Constance shore at Lindau (a GSHHG lake)."""
    borders = shared_env.client.get("/v1/overlays/borders").json()["features"][0]["geometry"]["coordinates"]
    coast = shared_env.client.get("/v1/overlays/coastlines").json()["features"][0]["geometry"]["coordinates"]

    def dist_km(lines, lon: float, lat: float) -> float:  # noqa: ANN001
        """Distance from lon/lat to the nearest segment (local equirectangular km)."""
        best = np.inf
        for c in lines:
            xy = (np.asarray(c) - [lon, lat]) * [111.2 * np.cos(np.radians(lat)), 111.2]
            a, ab = xy[:-1], np.diff(xy, axis=0)
            t = np.clip(-(a * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
            best = min(best, float(np.hypot(*(a + ab * t[:, None]).T).min()))
        return best

    assert dist_km(borders, 9.3303, 46.5056) < 2.0  # Splügen pass (CH/IT)
    assert dist_km(coast, 9.6850, 47.5450) < 2.0  # Lindau harbour (Lake Constance)
    assert dist_km(borders, 10.0, 46.0) > 15  # Bergamo Alps: no border there


def test_unknown_overlay_is_422_naming_the_valid_ones(shared_env) -> None:  # noqa: ANN001
    r = shared_env.client.get("/v1/overlays/rivers")
    assert r.status_code == 422
    assert "coastlines" in r.text and "borders" in r.text


def test_png_map_draws_borders(shared_env) -> None:  # noqa: ANN001
    img = _png(shared_env.client.get("/v1/maps/rain/latest").content)
    border = str(plotting.OVERLAY_STYLES["borders"]["colors"])
    assert _count(img, border) > 100  # dashed CH/AT/IT/DE borders cross the Alps grid
