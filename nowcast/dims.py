"""Canonical names, units and dtypes of the nowcast data model, and their validation.

Every boundary of the system (readers, store, sources, models, metrics, API) exchanges
``xarray`` objects that use the names defined here and nowhere else spelled out.

A radar frame is a ``DataArray`` with dims ``(time, y, x)`` (or ``(y, x)`` for a single
frame), float32 rain rate in mm/h. NaN means *no radar coverage* (unknown), 0 means
*observed dry*. ``x`` / ``y`` are projection coordinates (metres or the CRS' own unit)
and the CRS travels as CF grid-mapping attributes (``crs_wkt``, ``proj4``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import xarray as xr

# --- dimension names -------------------------------------------------------------------
TIME = "time"
Y = "y"
X = "x"
INIT_TIME = "init_time"
LEAD_TIME = "lead_time"

# --- variable names --------------------------------------------------------------------
RAIN_RATE = "rain_rate"
LIGHTNING = "lightning"
LIGHTNING_PROBABILITY = "lightning_probability"
COVERAGE = "coverage"
GRID_MAPPING = "spatial_ref"

# --- units -----------------------------------------------------------------------------
RAIN_RATE_UNITS = "mm h-1"
REFLECTIVITY_UNITS = "dBZ"
ACCUMULATION_UNITS = "mm"
LIGHTNING_UNITS = "flashes per cell per interval"
PROBABILITY_UNITS = "1"

FLOAT = np.float32

# --- timing ----------------------------------------------------------------------------
DEFAULT_CADENCE = pd.Timedelta(minutes=5)
DEFAULT_LEADS = tuple(pd.Timedelta(minutes=5 * i) for i in range(1, 16))  # 5..75 min

FRAME_DIMS = (TIME, Y, X)
FORECAST_DIMS = (LEAD_TIME, Y, X)
FORECAST_STORE_DIMS = (INIT_TIME, LEAD_TIME, Y, X)


class DataModelError(ValueError):
    """An xarray object does not follow the nowcast data model."""


@dataclass(frozen=True)
class ZRRelation:
    """Z = a * R**b relation between reflectivity factor Z (mm6 m-3) and rain rate R (mm/h).

    Defaults are Marshall-Palmer (a=200, b=1.6).
    """

    a: float = 200.0
    b: float = 1.6

    def __post_init__(self) -> None:
        if not (self.a > 0 and self.b > 0):
            raise ValueError(f"Z-R parameters must be positive, got a={self.a}, b={self.b}")


MARSHALL_PALMER = ZRRelation()


def crs_attrs(crs: object) -> dict[str, str]:
    """CF grid-mapping attributes (``crs_wkt``, ``spatial_ref``, ``proj4``) for a pyproj-compatible CRS.

    Every window read attaches its store's CRS: the attributes of a hashable ``crs`` (a WKT or
    EPSG string, a pyproj CRS) are computed once and copied (the WKT/PROJ/CF conversions cost
    milliseconds each time).
    """
    try:
        return dict(_crs_attrs_cached(crs))
    except TypeError:  # an unhashable CRS description (e.g. a dict)
        return _crs_attrs(crs)


@lru_cache(maxsize=32)
def _crs_attrs_cached(crs: object) -> dict[str, str]:
    return _crs_attrs(crs)


def _crs_attrs(crs: object) -> dict[str, str]:
    from pyproj import CRS

    c = CRS.from_user_input(crs)
    attrs: dict[str, str] = {"crs_wkt": c.to_wkt(), "spatial_ref": c.to_wkt()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            attrs["proj4"] = c.to_proj4()
    except Exception:  # pragma: no cover - some CRS have no PROJ.4 form
        pass
    try:
        with warnings.catch_warnings():  # lossy CF forms (e.g. skew grids) warn; only the name is kept
            warnings.simplefilter("ignore", UserWarning)
            cf = c.to_cf()
        for key in ("grid_mapping_name",):
            if key in cf:
                attrs[key] = str(cf[key])
    except Exception:  # pragma: no cover
        pass
    return attrs


def crs_of(obj: xr.DataArray | xr.Dataset):  # -> pyproj.CRS
    """The pyproj CRS carried by ``obj`` (grid-mapping coordinate or attrs)."""
    from pyproj import CRS

    candidates = []
    if GRID_MAPPING in obj.coords:
        candidates.append(obj.coords[GRID_MAPPING].attrs)
    candidates.append(obj.attrs)
    for attrs in candidates:
        for key in ("crs_wkt", "spatial_ref", "proj4"):
            if key in attrs and attrs[key]:
                return CRS.from_user_input(attrs[key])
    raise DataModelError("object carries no CRS (no 'spatial_ref' grid-mapping coordinate)")


def attach_crs(obj: xr.DataArray | xr.Dataset, crs: object) -> xr.DataArray | xr.Dataset:
    """Return ``obj`` with a scalar ``spatial_ref`` grid-mapping coordinate for ``crs``."""
    gm = xr.DataArray(np.int32(0), attrs=crs_attrs(crs))
    out = obj.assign_coords({GRID_MAPPING: gm})
    if isinstance(out, xr.Dataset):
        for name in out.data_vars:
            if {Y, X} <= set(out[name].dims):
                out[name].attrs["grid_mapping"] = GRID_MAPPING
    else:
        out.attrs["grid_mapping"] = GRID_MAPPING
    return out


def make_frames(
    values: np.ndarray,
    times: Iterable[object] | object,
    x: np.ndarray,
    y: np.ndarray,
    crs: object,
    *,
    name: str = RAIN_RATE,
    units: str = RAIN_RATE_UNITS,
    attrs: dict[str, object] | None = None,
) -> xr.DataArray:
    """Build a frame ``DataArray(time, y, x)`` float32 from raw arrays.

    Parameters
    ----------
    values: array (time, y, x) or (y, x), float, in ``units``; NaN = no coverage.
    times: one timestamp or a sequence of them (UTC, naive or tz-aware).
    x, y: 1-D cell-centre coordinates in CRS units.
    crs: anything ``pyproj.CRS.from_user_input`` accepts.
    """
    arr = np.asarray(values, dtype=FLOAT)
    if arr.ndim == 2:
        arr = arr[None]
    tindex = to_utc_index(times)
    if arr.shape[0] != len(tindex):
        raise DataModelError(f"{arr.shape[0]} frames but {len(tindex)} timestamps")
    da = xr.DataArray(
        arr,
        dims=FRAME_DIMS,
        coords={TIME: tindex.values, Y: np.asarray(y, dtype=np.float64), X: np.asarray(x, dtype=np.float64)},
        name=name,
        attrs={"units": units, **(attrs or {})},
    )
    da[X].attrs.update(standard_name="projection_x_coordinate", axis="X")
    da[Y].attrs.update(standard_name="projection_y_coordinate", axis="Y")
    return attach_crs(da, crs)  # type: ignore[return-value]


def to_utc_index(times: Iterable[object] | object) -> pd.DatetimeIndex:
    """Timestamps as a tz-naive UTC ``DatetimeIndex`` (ns); tz-aware inputs are converted."""
    if isinstance(times, str | pd.Timestamp | np.datetime64) or not isinstance(times, Iterable):
        times = [times]
    idx = pd.DatetimeIndex(pd.to_datetime(list(times), utc=True)).tz_convert(None)  # type: ignore[arg-type]
    return idx.as_unit("ns")


def to_utc_timestamp(t: object) -> pd.Timestamp:
    """One timestamp as tz-naive UTC."""
    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def validate_frames(da: xr.DataArray, *, require_crs: bool = True) -> xr.DataArray:
    """Check that ``da`` follows the frame data model; return it unchanged or raise DataModelError.

    Checks: dims (time, y, x) or (y, x); float32; units mm/h (for rain rate); monotonic
    1-D x/y coordinates; datetime64 time; CRS present; no negative values.
    """
    if da.dims not in (FRAME_DIMS, (Y, X)):
        raise DataModelError(f"dims must be {FRAME_DIMS} or ('y', 'x'), got {da.dims}")
    if da.dtype != FLOAT:
        raise DataModelError(f"dtype must be float32, got {da.dtype}")
    if da.name in (RAIN_RATE, None) and da.attrs.get("units") != RAIN_RATE_UNITS:
        raise DataModelError(f"rain rate units must be {RAIN_RATE_UNITS!r}, got {da.attrs.get('units')!r}")
    for c in (X, Y):
        if c not in da.coords:
            raise DataModelError(f"missing coordinate {c!r}")
        v = np.asarray(da[c].values)
        if v.ndim != 1 or v.size < 1:
            raise DataModelError(f"coordinate {c!r} must be 1-D")
        if v.size > 1:
            d = np.diff(v)
            if not (np.all(d > 0) or np.all(d < 0)):
                raise DataModelError(f"coordinate {c!r} must be strictly monotonic")
    if TIME in da.dims and not np.issubdtype(da[TIME].dtype, np.datetime64):
        raise DataModelError("time coordinate must be datetime64")
    if require_crs:
        crs_of(da)
    values = np.asarray(da.values)
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() < 0:
        raise DataModelError(f"negative values found (min {finite.min()})")
    return da
