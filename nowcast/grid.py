"""Regular grids in any CRS: description, lon/lat bounds, and regridding between grids.

A :class:`Grid` is the geometry of a frame: 1-D cell-centre coordinates ``x`` and ``y``
(CRS units, usually metres) and a CRS. Frames on a grid are ``DataArray(..., y, x)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import xarray as xr

from nowcast import dims


@dataclass(frozen=True, eq=False)
class Grid:
    """A regular (or at least rectilinear) grid.

    Attributes
    ----------
    x, y: 1-D float64 cell-centre coordinates in CRS units; ``y`` may be descending
        (north-up images) or ascending.
    crs_wkt: the CRS as WKT2.
    """

    x: np.ndarray
    y: np.ndarray
    crs_wkt: str
    name: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", np.asarray(self.x, dtype=np.float64))
        object.__setattr__(self, "y", np.asarray(self.y, dtype=np.float64))
        if self.x.ndim != 1 or self.y.ndim != 1 or self.x.size < 1 or self.y.size < 1:
            raise ValueError("grid coordinates must be non-empty 1-D arrays")

    # -- construction ------------------------------------------------------------------
    @classmethod
    def regular(
        cls,
        crs: object,
        x0: float,
        y0: float,
        dx: float,
        dy: float,
        nx: int,
        ny: int,
        name: str = "",
    ) -> Grid:
        """Grid from the centre of the first cell (x0, y0) and signed steps; dy < 0 for north-up."""
        from pyproj import CRS

        x = x0 + dx * np.arange(nx)
        y = y0 + dy * np.arange(ny)
        return cls(x=x, y=y, crs_wkt=CRS.from_user_input(crs).to_wkt(), name=name)

    @classmethod
    def from_bounds(
        cls, crs: object, xmin: float, ymin: float, xmax: float, ymax: float, resolution: float, name: str = ""
    ) -> Grid:
        """North-up grid covering [xmin, xmax] x [ymin, ymax] with square cells of ``resolution``."""
        nx = max(1, int(round((xmax - xmin) / resolution)))
        ny = max(1, int(round((ymax - ymin) / resolution)))
        return cls.regular(crs, xmin + resolution / 2, ymax - resolution / 2, resolution, -resolution, nx, ny, name)

    @classmethod
    def of(cls, obj: xr.DataArray | xr.Dataset) -> Grid:
        """The grid of a frame or dataset following the data model."""
        return cls(x=obj[dims.X].values, y=obj[dims.Y].values, crs_wkt=dims.crs_of(obj).to_wkt())

    # -- properties --------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return (self.y.size, self.x.size)

    @cached_property
    def crs(self):  # -> pyproj.CRS
        from pyproj import CRS

        return CRS.from_wkt(self.crs_wkt)

    @property
    def dx(self) -> float:
        return float(self.x[1] - self.x[0]) if self.x.size > 1 else 1.0

    @property
    def dy(self) -> float:
        return float(self.y[1] - self.y[0]) if self.y.size > 1 else -1.0

    @property
    def resolution(self) -> float:
        """Mean absolute cell size in CRS units."""
        return float((abs(self.dx) + abs(self.dy)) / 2)

    @property
    def cell_size_m(self) -> float:
        """Mean absolute cell size in metres (degrees converted at the grid's mean latitude)."""
        crs = self.crs
        if crs.is_geographic:
            lat = float(np.deg2rad(np.mean(self.y)))
            return float((abs(self.dx) * np.cos(lat) + abs(self.dy)) / 2 * 111_320.0)
        factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        return self.resolution * float(factor or 1.0)

    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the cell edges, CRS units."""
        hx, hy = abs(self.dx) / 2, abs(self.dy) / 2
        return (self.x.min() - hx, self.y.min() - hy, self.x.max() + hx, self.y.max() + hy)

    def bbox_lonlat(self, samples: int = 21) -> tuple[float, float, float, float]:
        """(lon_min, lat_min, lon_max, lat_max) of the grid outline, degrees (densified edges)."""
        from pyproj import Transformer

        xmin, ymin, xmax, ymax = self.bounds()
        t = np.linspace(0, 1, samples)
        xs = np.concatenate([xmin + (xmax - xmin) * t, np.full(samples, xmax), xmax - (xmax - xmin) * t, np.full(samples, xmin)])
        ys = np.concatenate([np.full(samples, ymin), ymin + (ymax - ymin) * t, np.full(samples, ymax), ymax - (ymax - ymin) * t])
        tr = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        lon, lat = tr.transform(xs, ys)
        return (float(np.nanmin(lon)), float(np.nanmin(lat)), float(np.nanmax(lon)), float(np.nanmax(lat)))

    def coords(self) -> dict[str, np.ndarray]:
        return {dims.Y: self.y, dims.X: self.x}

    def to_json(self) -> str:
        """Compact JSON description (stored in the Zarr attributes)."""
        return json.dumps(
            {"name": self.name, "crs_wkt": self.crs_wkt, "x": self.x.tolist(), "y": self.y.tolist()}
        )

    @classmethod
    def from_json(cls, text: str) -> Grid:
        d = json.loads(text)
        return cls(x=np.asarray(d["x"]), y=np.asarray(d["y"]), crs_wkt=d["crs_wkt"], name=d.get("name", ""))

    def same_as(self, other: Grid, rtol: float = 1e-9) -> bool:
        """True when both grids have identical coordinates and CRS."""
        return (
            self.shape == other.shape
            and np.allclose(self.x, other.x, rtol=rtol, atol=1e-6)
            and np.allclose(self.y, other.y, rtol=rtol, atol=1e-6)
            and self.crs == other.crs
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grid) and self.same_as(other)

    def __hash__(self) -> int:
        return hash((self.shape, round(float(self.x[0]), 3), round(float(self.y[0]), 3)))

    def index_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row/column indices of points (CRS units) and a mask of the points inside the grid."""
        col = np.rint((np.asarray(x) - self.x[0]) / self.dx).astype(np.int64)
        row = np.rint((np.asarray(y) - self.y[0]) / self.dy).astype(np.int64)
        inside = (col >= 0) & (col < self.x.size) & (row >= 0) & (row < self.y.size)
        return row, col, inside

    def lonlat_to_index(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row/column of lon/lat points (degrees) and a mask of those inside the grid."""
        from pyproj import Transformer

        tr = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)
        x, y = tr.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
        x = np.where(np.isfinite(x), x, np.nan)
        y = np.where(np.isfinite(y), y, np.nan)
        with np.errstate(invalid="ignore"):
            row, col, inside = self.index_of(np.nan_to_num(x, nan=-1e30), np.nan_to_num(y, nan=-1e30))
        return row, col, inside & np.isfinite(x) & np.isfinite(y)
