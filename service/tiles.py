"""XYZ tiles in Web Mercator (EPSG:3857) sampled from a store grid by nearest neighbour.

For a tile ``(z, x, y)`` (x to the east, y to the south, 256 x 256 pixels) the centre of
each pixel is transformed from Web Mercator into the store CRS with pyproj and mapped to
the nearest grid cell; pixels outside the grid get index -1 (transparent). The mapping
depends only on the grid and ``(z, x, y)`` and is kept in a bounded LRU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nowcast.grid import Grid
from service.cache import LRUCache

TILE_SIZE = 256
#: half the side of the Web Mercator square, metres
ORIGIN = 20037508.342789244


class TileError(ValueError):
    """Tile coordinates outside the zoom range or the tile matrix."""


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a tile in EPSG:3857 metres."""
    size = 2 * ORIGIN / (1 << z)
    xmin = -ORIGIN + x * size
    ymax = ORIGIN - y * size
    return (xmin, ymax - size, xmin + size, ymax)


def check_tile(z: int, x: int, y: int, min_zoom: int, max_zoom: int) -> None:
    """Raise TileError naming the bad value when (z, x, y) is not a valid tile in the zoom range."""
    if not (min_zoom <= z <= max_zoom):
        raise TileError(f"zoom {z} outside the served range {min_zoom}..{max_zoom}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise TileError(f"tile x={x}, y={y} outside the tile matrix of zoom {z} (0..{n - 1})")


@dataclass
class TileSampler:
    """Nearest-cell index mapping from tiles to one grid, cached per (z, x, y)."""

    grid: Grid
    max_items: int = 4096

    def __post_init__(self) -> None:
        from pyproj import Transformer

        self._to_grid = Transformer.from_crs("EPSG:3857", self.grid.crs, always_xy=True)
        self._cache: LRUCache[np.ndarray] = LRUCache(self.max_items)
        self._bbox = self._grid_bbox_3857()

    def _grid_bbox_3857(self) -> tuple[float, float, float, float]:
        from pyproj import Transformer

        lon0, lat0, lon1, lat1 = self.grid.bbox_lonlat()
        lat0, lat1 = max(lat0, -85.0511), min(lat1, 85.0511)
        tr = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
        xs, ys = tr.transform([lon0, lon1], [lat0, lat1])
        return (min(xs), min(ys), max(xs), max(ys))

    def intersects(self, z: int, x: int, y: int) -> bool:
        """True when the tile may overlap the grid (cheap bounding-box test)."""
        a = tile_bounds(z, x, y)
        b = self._bbox
        return not (a[2] < b[0] or a[0] > b[2] or a[3] < b[1] or a[1] > b[3])

    def index(self, z: int, x: int, y: int) -> np.ndarray:
        """Flat grid indices (TILE_SIZE, TILE_SIZE) int64 of each pixel's nearest cell; -1 outside."""
        key = (z, x, y)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if not self.intersects(z, x, y):
            out = np.full((TILE_SIZE, TILE_SIZE), -1, dtype=np.int64)
        else:
            xmin, ymin, xmax, ymax = tile_bounds(z, x, y)
            step = (xmax - xmin) / TILE_SIZE
            px = xmin + (np.arange(TILE_SIZE) + 0.5) * step
            py = ymax - (np.arange(TILE_SIZE) + 0.5) * step
            mx, my = np.meshgrid(px, py)
            gx, gy = self._to_grid.transform(mx, my)
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(gx) & np.isfinite(gy)
                row, col, inside = self.grid.index_of(np.where(ok, gx, -1e30), np.where(ok, gy, -1e30))
            inside &= ok
            out = np.where(inside, row * self.grid.shape[1] + col, -1).astype(np.int64)
        self._cache.put(key, out)
        return out

    def sample(self, field: np.ndarray, z: int, x: int, y: int) -> np.ndarray:
        """Values (TILE_SIZE, TILE_SIZE) float32 of ``field`` (y, x) at the tile pixels; NaN outside."""
        idx = self.index(z, x, y)
        flat = np.asarray(field, dtype=np.float32).ravel()
        out = flat[np.clip(idx, 0, None)]
        out[idx < 0] = np.nan
        return out


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The tile (x, y) containing a lon/lat point at zoom z."""
    n = 1 << z
    lat_r = math.radians(max(min(lat, 85.0511), -85.0511))
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)
