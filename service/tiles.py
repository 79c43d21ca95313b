"""XYZ tiles in Web Mercator (EPSG:3857) sampled from a store grid by nearest neighbour.

For a tile ``(z, x, y)`` (x to the east, y to the south, 256 x 256 pixels) the centre of
each pixel is transformed from Web Mercator into the store CRS and mapped to the nearest grid
cell; pixels outside the grid get index -1 (transparent). The mapping depends only on the grid
and ``(z, x, y)`` and is kept in a bounded LRU.

Transforming all 65,536 pixel centres with pyproj costs 15-25 ms, most of a cold tile. The
projection is smooth at the scale of a few pixels, so :class:`TileSampler` transforms a
33 x 33 lattice (every 8 pixels) and interpolates bilinearly between its nodes; the result is
checked against exact transforms of the 1,024 pixel centres midway between the nodes, and when
the error there exceeds ``1e-3`` of a grid cell (strong distortion, e.g. near a pole) the tile
falls back to transforming every pixel. So only pixels within about 1/100 of a cell from a cell
edge may get the neighbouring cell (tested against the exact transform).

A tile is encoded as a palette PNG: each cell's colour level (an index into the layer's colour
table, 0 = transparent) is computed once per frame (:func:`level_field`), a tile gathers the
levels of its pixels and writes them with the colour table as palette and its alpha as
``tRNS``. That is the same image as colouring the sampled values pixel by pixel, at a quarter
of the bytes to compress and send.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from nowcast import plotting
from nowcast.grid import Grid
from service.cache import LRUCache

TILE_SIZE = 256
#: pixels between the nodes of the interpolation lattice
LATTICE = 8
#: largest interpolation error accepted, in grid cells (else every pixel is transformed)
TOLERANCE_CELLS = 1e-3
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
        self._nodes = np.arange(0, TILE_SIZE + 1, LATTICE, dtype=float)
        self._weights = _interpolation_matrix(self._nodes, np.arange(TILE_SIZE) + 0.5)
        self._mid = np.arange(LATTICE // 2, TILE_SIZE, LATTICE)

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
        """Flat grid indices (TILE_SIZE, TILE_SIZE) int32 of each pixel's nearest cell; -1 outside."""
        key = (z, x, y)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if not self.intersects(z, x, y):
            out = np.full((TILE_SIZE, TILE_SIZE), -1, dtype=np.int32)
        else:
            cx, cy = self._cell_coords(z, x, y)
            ny, nx = self.grid.shape
            with np.errstate(invalid="ignore"):  # NaN (not projectable) -> outside
                col = np.rint(cx, out=cx)
                row = np.rint(cy, out=cy)
                inside = (col >= 0) & (col < nx) & (row >= 0) & (row < ny)
                out = (row * nx + col).astype(np.int32)
            out[~inside] = -1
        self._cache.put(key, out)
        return out

    def _cell_coords(self, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (column, row) of the grid (TILE_SIZE, TILE_SIZE) at the tile's pixel centres (see the module docstring).

        Column ``c`` is at ``x[0] + c * dx``, row ``r`` at ``y[0] + r * dy``: rounding gives the nearest cell.
        """
        xmin, ymin, xmax, ymax = tile_bounds(z, x, y)
        step = (xmax - xmin) / TILE_SIZE
        x0, y0, dx, dy = float(self.grid.x[0]), float(self.grid.y[0]), self.grid.dx, self.grid.dy
        with np.errstate(invalid="ignore", over="ignore"):
            nx_, ny_ = np.meshgrid(xmin + self._nodes * step, ymax - self._nodes * step)
            lx, ly = self._to_grid.transform(nx_, ny_)
            if np.isfinite(lx).all() and np.isfinite(ly).all():
                w = self._weights
                cx, cy = w @ ((lx - x0) / dx) @ w.T, w @ ((ly - y0) / dy) @ w.T
                # exact transforms of pixel centres halfway between the nodes (worst case of the interpolation)
                mid = self._mid
                ex, ey = self._to_grid.transform(*np.meshgrid(xmin + (mid + 0.5) * step, ymax - (mid + 0.5) * step))
                err = np.maximum(np.abs((ex - x0) / dx - cx[np.ix_(mid, mid)]), np.abs((ey - y0) / dy - cy[np.ix_(mid, mid)]))
                if np.isfinite(err).all() and float(err.max()) <= TOLERANCE_CELLS:
                    return cx, cy
            centres = np.arange(TILE_SIZE) + 0.5
            gx, gy = self._to_grid.transform(*np.meshgrid(xmin + centres * step, ymax - centres * step))
            return (np.asarray(gx) - x0) / dx, (np.asarray(gy) - y0) / dy

    def sample(self, field: np.ndarray, z: int, x: int, y: int) -> np.ndarray:
        """Values (TILE_SIZE, TILE_SIZE) float32 of ``field`` (y, x) at the tile pixels; NaN outside."""
        idx = self.index(z, x, y)
        flat = np.asarray(field, dtype=np.float32).ravel()
        out = flat[np.clip(idx, 0, None)]
        out[idx < 0] = np.nan
        return out


def _interpolation_matrix(nodes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(len(points), len(nodes)) weights of linear interpolation from regular ``nodes`` to ``points``."""
    spacing = nodes[1] - nodes[0]
    pos = np.clip((points - nodes[0]) / spacing, 0, len(nodes) - 1 - 1e-9)
    i = pos.astype(np.int64)
    f = pos - i
    w = np.zeros((len(points), len(nodes)))
    rows = np.arange(len(points))
    w[rows, i] = 1 - f
    w[rows, i + 1] = f
    return w


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The tile (x, y) containing a lon/lat point at zoom z."""
    n = 1 << z
    lat_r = math.radians(max(min(lat, 85.0511), -85.0511))
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


#: alpha of coloured tile pixels (the base map shows through a little)
TILE_ALPHA = 220


def level_field(field: np.ndarray, layer: str) -> np.ndarray:
    """Colour levels (y * x,) uint8 of a field (y, x): index into the layer's colour table, 0 = transparent."""
    return plotting.level_index(np.asarray(field).ravel(), plotting.get_scale(layer))


def tile_png(levels: np.ndarray, sampler: TileSampler, layer: str, z: int, x: int, y: int) -> bytes:
    """A 256 x 256 palette PNG of tile (z, x, y) from the cell levels of one frame (see :func:`level_field`)."""
    idx = sampler.index(z, x, y)
    pixels = levels[np.clip(idx, 0, None)]
    pixels[idx < 0] = 0
    return palette_png(pixels, plotting.get_scale(layer).rgba_table(TILE_ALPHA))


def palette_png(indices: np.ndarray, table: np.ndarray) -> bytes:
    """Encode (h, w) uint8 ``indices`` into the (n, 4) uint8 RGBA ``table`` as a palette PNG with tRNS alpha."""
    from PIL import Image

    h, w = indices.shape
    img = Image.frombytes("P", (w, h), np.ascontiguousarray(indices, dtype=np.uint8).tobytes())
    img.putpalette(table[:, :3].tobytes(), rawmode="RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=table[:, 3].tobytes(), compress_level=1)
    return buf.getvalue()
