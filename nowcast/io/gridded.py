"""Bare gridded arrays (one 2-D dataset in an HDF5 or netCDF file) described by a product file.

Many providers publish a plain array with no usable grid attributes: the grid is in their
documentation and the time only in the file name. A *product* file (TOML or YAML, schema
:class:`Product`) says what the content means; the ``gridded`` reader applies it::

    [product]
    name = "knmi-nl25-rap"

    [data]
    dataset = "image1/image_data"   # HDF5 path or netCDF variable
    units = "mm"                    # "mm/h", "mm" (per `interval`) or "dBZ" (with `zr`)
    interval = "5min"
    gain = 0.01                     # physical = raw * gain + offset
    nodata = 65535                  # raw value(s) -> NaN (no coverage)

    [grid]
    crs = "+proj=stere +lat_0=90 +lon_0=0 +lat_ts=60 +a=6378137 +b=6356752 +units=m"
    shape = [765, 700]              # rows, columns
    upper_left_lonlat = [0.0, 55.974]
    cell_size = [1000, 1000]

    [time]
    pattern = "RAD_NL25_RAP_5min_%Y%m%d%H%M.h5"

The grid is given by exactly one of ``extent`` (outer edges in CRS units), ``transform``
(GDAL geotransform of the upper-left edge) or ``upper_left_lonlat`` + ``cell_size``. The
reader is never chosen by content sniffing (``accepts`` is always False): pass the product,
``read_radar(path, reader="gridded", product=load_product(PRODUCT))`` or
``nowcast import FILES --product PRODUCT``. A file that does not match the product raises
one :class:`~nowcast.io.base.ReaderError` naming the product field (e.g. ``grid.shape``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from nowcast import dims, transforms
from nowcast.io.base import (
    READERS,
    ReaderError,
    Source,
    dbz_to_rate,
    edges_to_centres,
    finish_frame,
    is_hdf5,
)

__all__ = ["Product", "GriddedReader", "load_product"]

NETCDF3_MAGIC = b"CDF"
_STRPTIME = {"Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{2}", "d": r"\d{2}", "j": r"\d{3}", "H": r"\d{2}", "M": r"\d{2}", "S": r"\d{2}"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProductInfo(_Strict):
    name: str = Field(min_length=1, description="label stored with each frame (attribute 'product')")
    description: str = ""


class ZR(_Strict):
    a: float = Field(200.0, gt=0)
    b: float = Field(1.6, gt=0)


class DataSpec(_Strict):
    dataset: str = Field(min_length=1, description="HDF5 dataset path or netCDF variable name")
    format: Literal["auto", "hdf5", "netcdf"] = "auto"
    units: Literal["mm/h", "mm", "dBZ"]
    interval: str | None = Field(None, description="accumulation interval for units = 'mm', e.g. '5min'")
    gain: float = 1.0
    offset: float = 0.0
    nodata: list[float] = Field(default_factory=list, description="raw values meaning no coverage (NaN)")
    undetect: list[float] = Field(default_factory=list, description="raw values meaning observed dry (0 mm/h)")
    zr: ZR = ZR()
    dry_dbz: float | None = Field(transforms.DEFAULT_DRY_DBZ, description="dBZ below this -> 0 mm/h")

    @field_validator("nodata", "undetect", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, int | float) else v

    @model_validator(mode="after")
    def _interval(self) -> DataSpec:
        if self.units == "mm":
            if not self.interval:
                raise ValueError("units = 'mm' needs interval (e.g. '5min')")
            try:
                td = pd.Timedelta(self.interval)
            except ValueError as exc:
                raise ValueError(f"interval {self.interval!r}: {exc}") from None
            if td <= pd.Timedelta(0):
                raise ValueError(f"interval {self.interval!r} must be positive")
        return self


class GridSpec(_Strict):
    crs: str = Field(min_length=1, description="EPSG:NNNN, PROJ string or WKT")
    shape: tuple[int, int] = Field(description="[rows, columns] of the dataset")
    extent: tuple[float, float, float, float] | None = Field(None, description="[xmin, ymin, xmax, ymax] outer cell edges")
    transform: tuple[float, float, float, float, float, float] | None = Field(
        None, description="GDAL geotransform [x_ul, dx, 0, y_ul, 0, dy] of the upper-left edge"
    )
    upper_left_lonlat: tuple[float, float] | None = Field(None, description="[lon, lat] of the upper-left outer corner")
    cell_size: tuple[float, float] | None = Field(None, description="[dx, dy] > 0 in CRS units (with upper_left_lonlat)")
    origin: Literal["upper", "lower"] = Field("upper", description="row 0 is the north (upper) or south (lower) edge")
    coverage_radius: float | None = Field(None, gt=0, description="cells farther from the grid centre are no coverage")

    @field_validator("crs")
    @classmethod
    def _crs(cls, v: str) -> str:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(v)
        except CRSError as exc:
            raise ValueError(f"not a CRS pyproj knows: {str(exc).splitlines()[0]}") from None
        return v

    @model_validator(mode="after")
    def _one_georeference(self) -> GridSpec:
        if min(self.shape) < 1:
            raise ValueError("shape must be positive [rows, columns]")
        given = [k for k in ("extent", "transform", "upper_left_lonlat") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of extent, transform, upper_left_lonlat (got {given or 'none'})")
        if self.upper_left_lonlat is not None and (self.cell_size is None or min(self.cell_size) <= 0):
            raise ValueError("upper_left_lonlat needs cell_size = [dx, dy] > 0")
        if self.extent is not None and not (self.extent[0] < self.extent[2] and self.extent[1] < self.extent[3]):
            raise ValueError("extent must be [xmin, ymin, xmax, ymax] with xmin < xmax, ymin < ymax")
        if self.transform is not None:
            t = self.transform
            if t[2] != 0 or t[4] != 0:
                raise ValueError("rotated transforms are not supported (terms 3 and 5 must be 0)")
            if t[1] == 0 or t[5] == 0:
                raise ValueError("transform cell sizes (terms 2 and 6) must be non-zero")
        return self

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre (x, y) in CRS units, in the dataset's row order."""
        ny, nx = self.shape
        if self.transform is not None:
            x0, dx, _, y0, _, dy = self.transform
            return edges_to_centres(x0, dx, nx), edges_to_centres(y0, dy, ny)
        if self.extent is not None:
            xmin, ymin, xmax, ymax = self.extent
            dx, dy = (xmax - xmin) / nx, (ymax - ymin) / ny
            x = edges_to_centres(xmin, dx, nx)
            y = edges_to_centres(ymax, -dy, ny) if self.origin == "upper" else edges_to_centres(ymin, dy, ny)
            return x, y
        from pyproj import Transformer

        assert self.upper_left_lonlat is not None and self.cell_size is not None
        ulx, uly = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True).transform(*self.upper_left_lonlat)
        dx, dy = self.cell_size
        if self.origin == "upper":
            return edges_to_centres(ulx, dx, nx), edges_to_centres(uly, -dy, ny)
        return edges_to_centres(ulx, dx, nx), edges_to_centres(uly - ny * dy, dy, ny)


class TimeSpec(_Strict):
    pattern: str = Field(
        min_length=2,
        description="file-name pattern with strptime fields %Y %y %m %d %j %H %M %S and * (any characters)",
    )
    offset: str = Field("0min", description="added to the parsed time to give the valid (end) time")

    @field_validator("pattern")
    @classmethod
    def _fields(cls, v: str) -> str:
        used = set(re.findall(r"%(.)", v))
        bad = used - set(_STRPTIME) - {"%"}
        if bad:
            raise ValueError(f"unsupported field(s) {', '.join('%' + b for b in sorted(bad))}; use {' '.join('%' + k for k in _STRPTIME)}")
        if not ({"Y", "y"} & used and ({"m", "d"} <= used or "j" in used) and "H" in used):
            raise ValueError("pattern needs a year (%Y or %y), a day (%m and %d, or %j) and an hour (%H)")
        return v

    @field_validator("offset")
    @classmethod
    def _offset(cls, v: str) -> str:
        try:
            pd.Timedelta(v)
        except ValueError as exc:
            raise ValueError(f"{v!r}: {exc}") from None
        return v

    def regex(self) -> re.Pattern[str]:
        out, i = [], 0
        p = self.pattern
        while i < len(p):
            c = p[i]
            if c == "%" and i + 1 < len(p):
                f = p[i + 1]
                out.append("%" if f == "%" else f"(?P<{f}>{_STRPTIME[f]})")
                i += 2
                continue
            out.append(".*" if c == "*" else re.escape(c))
            i += 1
        return re.compile("".join(out))

    def parse(self, name: str) -> pd.Timestamp | None:
        """Valid time (naive UTC) from a file name, or None when the name does not match."""
        m = self.regex().fullmatch(name)
        if not m:
            return None
        g = m.groupdict()
        year = int(g["Y"]) if "Y" in g else 2000 + int(g["y"])
        hour, minute, second = int(g["H"]), int(g.get("M", 0)), int(g.get("S", 0))
        try:
            if "j" in g:
                day = pd.Timestamp(year, 1, 1) + pd.Timedelta(days=int(g["j"]) - 1)
            else:
                day = pd.Timestamp(year, int(g["m"]), int(g["d"]))
            t = day + pd.Timedelta(hours=hour, minutes=minute, seconds=second)
        except ValueError:
            return None
        return t + pd.Timedelta(self.offset)


class Product(_Strict):
    """A gridded product: what one file's 2-D dataset means (units, flags, grid, time)."""

    product: ProductInfo
    data: DataSpec
    grid: GridSpec
    time: TimeSpec
    _source_file: str = PrivateAttr("")

    @property
    def source_file(self) -> str:
        """The product file this was loaded from ('' when built in code)."""
        return self._source_file

    def label(self) -> str:
        return f"product {self.source_file or self.product.name}"


def load_product(path: str | Path) -> Product:
    """Read and validate a product file (TOML / YAML); ConfigError naming every bad field."""
    from nowcast.config import load_config

    prod = load_config(Product, path)
    prod._source_file = str(path)
    return prod


class GriddedReader:
    """One 2-D dataset of an HDF5 / netCDF file, interpreted by a :class:`Product`."""

    name = "gridded"
    description = "bare 2-D array in HDF5/netCDF described by a product file (never sniffed)"

    def accepts(self, src: Source) -> bool:
        return False  # the content alone never says what a bare array means: a product is required

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        prod = options.get("product")
        path = str(src.path)
        if prod is None:
            raise ReaderError(path, "the gridded reader needs a product (nowcast import --product PRODUCT.toml)")
        if not isinstance(prod, Product):
            prod = load_product(prod)
        where = f"{prod.label()}"
        time = prod.time.parse(src.path.name)
        if time is None:
            raise ReaderError(path, f"{where}: time.pattern {prod.time.pattern!r} does not match the file name {src.path.name!r}")
        raw = _read_dataset(src, prod, where)
        if raw.ndim > 2:
            raw = raw.reshape([n for n in raw.shape if n != 1] or [1])
        if raw.ndim != 2:
            raise ReaderError(path, f"{where}: data.dataset {prod.data.dataset!r} has shape {raw.shape}; a product reads one 2-D array")
        if tuple(raw.shape) != tuple(prod.grid.shape):
            raise ReaderError(path, f"{where}: grid.shape is {list(prod.grid.shape)} but data.dataset {prod.data.dataset!r} is {list(raw.shape)}")
        rate = _to_rate(raw, prod.data)
        x, y = prod.grid.coords()
        if prod.grid.coverage_radius is not None:
            cx, cy = (x[0] + x[-1]) / 2, (y[0] + y[-1]) / 2
            rate[((x[None, :] - cx) ** 2 + (y[:, None] - cy) ** 2) > prod.grid.coverage_radius**2] = np.nan
        return finish_frame(
            rate, x=x, y=y, crs=prod.grid.crs, time=time, src=src, source_format=self.name,
            quantity=f"{prod.data.units} ({prod.data.dataset})", product=prod.product.name,
            extra_attrs={"product_file": prod.source_file, "time_from": "file name"},
        )


def _read_dataset(src: Source, prod: Product, where: str) -> np.ndarray:
    """Raw values of ``data.dataset`` (no scaling), as stored."""
    path = str(src.path)
    fmt = prod.data.format
    hdf5 = is_hdf5(src.head)
    netcdf3 = src.head.startswith(NETCDF3_MAGIC)
    if fmt == "auto":
        fmt = "netcdf" if netcdf3 else "hdf5" if hdf5 else ""
    readable = {"hdf5": hdf5, "netcdf": hdf5 or netcdf3}.get(fmt, False)  # netCDF4 files are HDF5
    if not readable:
        kind = {"hdf5": "an HDF5", "netcdf": "a netCDF"}.get(fmt, "an HDF5 or netCDF")
        raise ReaderError(path, f"{where}: data.format: not {kind} file (first bytes {src.head[:8]!r})")
    name = prod.data.dataset
    if fmt == "hdf5":
        import h5py

        with h5py.File(src.h5_target(), "r") as f:
            obj = f.get(name)
            if not isinstance(obj, h5py.Dataset):
                found: list[str] = []
                f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and len(found) < 8 else None)
                raise ReaderError(path, f"{where}: data.dataset {name!r} is not a dataset in the file (datasets: {', '.join(found) or 'none'})")
            return np.asarray(obj[()])
    import netCDF4

    with netCDF4.Dataset("inmemory.nc", memory=src.data()) if src.compression else netCDF4.Dataset(path) as nc:
        if name not in nc.variables:
            raise ReaderError(path, f"{where}: data.dataset {name!r} is not a variable in the file (variables: {', '.join(list(nc.variables)[:12])})")
        var = nc.variables[name]
        var.set_auto_maskandscale(False)
        return np.asarray(var[...])


def _to_rate(raw: np.ndarray, spec: DataSpec) -> np.ndarray:
    """Raw values -> float32 rain rate (mm/h): flags first (on raw values), then gain/offset and units."""
    raw = np.asarray(raw)
    if raw.dtype.byteorder not in ("=", "|"):
        raw = raw.astype(raw.dtype.newbyteorder("="))
    val = raw.astype(np.float64) * spec.gain + spec.offset
    nodata = _flag(raw, spec.nodata)
    undetect = _flag(raw, spec.undetect)
    val[nodata | undetect] = np.nan
    if spec.units == "mm/h":
        rate = val.astype(dims.FLOAT)
    elif spec.units == "mm":
        rate = transforms.accumulation_to_rainrate(val, pd.Timedelta(spec.interval)).astype(dims.FLOAT)
    else:
        rate = dbz_to_rate(val, {"zr": dims.ZRRelation(a=spec.zr.a, b=spec.zr.b), "dry_dbz": spec.dry_dbz})
    rate[undetect] = 0.0
    rate[nodata] = np.nan
    return rate


def _flag(raw: np.ndarray, values: list[float]) -> np.ndarray:
    mask = np.zeros(raw.shape, dtype=bool)
    for v in values:
        mask |= np.isnan(raw) if math.isnan(v) else (raw == v)
    return mask


READERS.register(GriddedReader.name, GriddedReader())
