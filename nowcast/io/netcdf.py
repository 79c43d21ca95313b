"""CF netCDF radar grids (generic) and the BoM Rainfields netCDF (10-min accumulations).

The generic reader takes any CF file (netCDF3 or netCDF4/HDF5) with one of:
a rain-rate variable (standard_name ``rainfall_rate``/``lwe_precipitation_rate`` or named
``rain_rate``), an accumulation (``precipitation_amount``/``lwe_thickness_of_precipitation_amount``
with an interval from ``start_time``..``valid_time`` or a ``cell_methods`` interval, converted
to mm/h) or a reflectivity (``equivalent_reflectivity_factor``, dBZ, Z-R); the CRS from its
grid mapping (``crs_wkt``/``spatial_ref`` or CF parameters); coordinates in km are converted to m.
``_FillValue``/``missing_value`` -> NaN (no coverage). It round-trips the project's own frames
(``DataArray.to_netcdf``).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims, transforms
from nowcast.io.base import (
    READERS,
    ReaderError,
    Source,
    dbz_to_rate,
    decode_str,
    finish_frame,
    h5_info,
)

RATE_NAMES = {"rainfall_rate", "lwe_precipitation_rate", "precipitation_rate"}
ACC_NAMES = {"precipitation_amount", "lwe_thickness_of_precipitation_amount", "thickness_of_rainfall_amount"}
DBZ_NAMES = {"equivalent_reflectivity_factor"}
_RATE_UNITS = {"mm h-1": 1.0, "mm/h": 1.0, "mm hr-1": 1.0, "mm hour-1": 1.0, "kg m-2 h-1": 1.0,
               "kg m-2 s-1": 3600.0, "mm s-1": 3600.0, "mm/s": 3600.0, "m s-1": 3.6e6}
_ACC_UNITS = {"mm": 1.0, "kg m-2": 1.0, "kg/m2": 1.0, "m": 1000.0}
_INTERVAL = re.compile(r"interval:\s*([0-9.]+)\s*(min|minute|minutes|h|hour|hours|s|second|seconds)")


def _is_netcdf(src: Source) -> bool:
    if src.head[:4] in (b"CDF\x01", b"CDF\x02", b"CDF\x05"):
        return True
    info = h5_info(src)
    if info is None:
        return False
    conv = decode_str(info["attrs"].get("Conventions", b""))
    if conv.upper().startswith("ODIM"):
        return False
    return "_NCProperties" in info["attrs"] or conv.upper().startswith("CF") or info["dimension_scales"]


def _open(src: Source) -> xr.Dataset:
    import netCDF4

    if src.compression is None:
        nc = netCDF4.Dataset(str(src.path), "r")
    else:
        nc = netCDF4.Dataset("in-memory.nc", "r", memory=src.data())
    return xr.open_dataset(xr.backends.NetCDF4DataStore(nc), decode_timedelta=False)


def _pick_variable(ds: xr.Dataset) -> tuple[str, str] | None:
    """(variable name, kind) with kind in rate/accumulation/dbz, or None."""
    found: list[tuple[int, str, str]] = []
    for name, var in ds.data_vars.items():
        if var.ndim < 2:
            continue
        sn = str(var.attrs.get("standard_name", "")).lower()
        units = str(var.attrs.get("units", "")).strip()
        if sn in RATE_NAMES or name == dims.RAIN_RATE:
            found.append((0, name, "rate"))
        elif sn in ACC_NAMES:
            found.append((1, name, "accumulation"))
        elif sn in DBZ_NAMES or units.lower() == "dbz":
            found.append((2, name, "dbz"))
    return (found and min(found)[1:]) or None  # type: ignore[return-value]


def _accumulation_interval(ds: xr.Dataset, var: xr.DataArray) -> pd.Timedelta | None:
    m = _INTERVAL.search(str(var.attrs.get("cell_methods", "")))
    if m:
        unit = {"min": "min", "minute": "min", "minutes": "min", "h": "h", "hour": "h", "hours": "h"}.get(m.group(2), "s")
        return pd.Timedelta(float(m.group(1)), unit=unit)
    if "start_time" in ds and "valid_time" in ds:
        return pd.Timestamp(ds["valid_time"].values) - pd.Timestamp(ds["start_time"].values)
    if "accumulation_minutes" in var.attrs:
        return pd.Timedelta(minutes=float(var.attrs["accumulation_minutes"]))
    return None


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


@functools.lru_cache(maxsize=32)
def _crs_from_cf(attrs_json: str) -> Any:
    """CRS from CF grid-mapping attributes; cached (bounded): pyproj's datum look-up is slow."""
    from pyproj import CRS

    return CRS.from_cf(json.loads(attrs_json))


def _crs_of(ds: xr.Dataset, var: xr.DataArray) -> Any:
    from pyproj import CRS

    gm_name = var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
    if gm_name and gm_name in ds.variables:
        attrs = ds[gm_name].attrs
        for key in ("crs_wkt", "spatial_ref", "proj4"):
            if attrs.get(key):
                return CRS.from_user_input(attrs[key])
        return _crs_from_cf(json.dumps({k: _jsonable(v) for k, v in attrs.items()}, sort_keys=True))
    if "crs_wkt" in var.attrs:
        return CRS.from_user_input(var.attrs["crs_wkt"])
    raise ValueError(f"variable {var.name!r} has no grid_mapping")


def _coord_m(ds: xr.Dataset, name: str, crs: Any) -> np.ndarray:
    c = ds[name]
    v = np.asarray(c.values, dtype=np.float64)
    units = str(c.attrs.get("units", "")).lower()
    if crs.is_projected and units in ("km", "kilometre", "kilometer", "kilometres", "kilometers"):
        v = v * 1000.0
    return v


def _valid_time(ds: xr.Dataset, var: xr.DataArray, index: int | None) -> tuple[pd.Timestamp, xr.DataArray]:
    tdim = next((d for d in var.dims[:-2]), None)
    if tdim is not None:
        n = var.sizes[tdim]
        if n > 1 and index is None:
            raise ValueError(f"variable {var.name!r} holds {n} times along {tdim!r}; pass time_index")
        var = var.isel({tdim: index or 0})
        if tdim in ds.coords:
            return pd.Timestamp(ds[tdim].values[index or 0]), var
    for cand in ("valid_time", "time"):
        if cand in ds.variables and ds[cand].size == 1 and np.issubdtype(ds[cand].dtype, np.datetime64):
            return pd.Timestamp(ds[cand].values.reshape(-1)[0]), var
    for v in ds.variables.values():
        if v.attrs.get("standard_name") == "time" and v.size == 1 and np.issubdtype(v.dtype, np.datetime64):
            return pd.Timestamp(v.values.reshape(-1)[0]), var
    raise ValueError("no valid time found (no time coordinate or valid_time variable)")


def read_cf(src: Source, source_format: str, options: dict[str, Any]) -> xr.DataArray:
    path = str(src.path)
    with _open(src) as ds:
        picked = _pick_variable(ds)
        if picked is None:
            raise ReaderError(path, f"no rain rate / accumulation / reflectivity variable among {list(ds.data_vars)}")
        name, kind = picked
        var = ds[name]
        time, var = _valid_time(ds, var, options.get("time_index"))
        while var.ndim > 2:  # e.g. a singleton level dimension
            var = var.isel({var.dims[0]: 0})
        ydim, xdim = var.dims
        crs = _crs_of(ds, ds[name])
        x, y = _coord_m(ds, xdim, crs), _coord_m(ds, ydim, crs)
        values = np.asarray(var.values, dtype=np.float32)
        units = str(var.attrs.get("units", "")).strip()
        if kind == "rate":
            if units not in _RATE_UNITS:
                raise ReaderError(path, f"unsupported rain rate units {units!r} of {name!r}")
            rate = values * np.float32(_RATE_UNITS[units])
        elif kind == "accumulation":
            if units not in _ACC_UNITS:
                raise ReaderError(path, f"unsupported accumulation units {units!r} of {name!r}")
            interval = _accumulation_interval(ds, ds[name])
            if interval is None:
                raise ReaderError(path, f"accumulation {name!r} without an interval (cell_methods / start_time)")
            rate = transforms.accumulation_to_rainrate(values * np.float32(_ACC_UNITS[units]), interval)
        else:
            rate = dbz_to_rate(values, options)
        product = str(ds.attrs.get("title", ds.attrs.get("product", name)))
        institution = str(ds.attrs.get("institution", ""))
    return finish_frame(
        rate, x=x, y=y, crs=crs, time=time, src=src, source_format=source_format,
        quantity=f"{name} ({units})", product=product, extra_attrs={"institution": institution} if institution else {},
    )


def _is_bom(src: Source) -> bool:
    def build() -> bool:
        info = h5_info(src)
        if info is not None:
            institution = decode_str(info["attrs"].get("institution", b""))
        else:
            institution = _global_attr(src, "institution")
        return "Bureau of Meteorology" in institution or b"Bureau of Meteorology" in src.head

    return bool(src.memo("is_bom", build))


def _global_attr(src: Source, key: str) -> str:
    try:
        import netCDF4

        nc = (netCDF4.Dataset(str(src.path)) if src.compression is None
              else netCDF4.Dataset("m.nc", memory=src.data()))
        try:
            return str(getattr(nc, key, ""))
        finally:
            nc.close()
    except Exception:
        return ""


class CfNetcdfReader:
    name = "cf_netcdf"
    description = "CF netCDF grid of rain rate / accumulation / reflectivity (incl. nowcast's own output)"

    def accepts(self, src: Source) -> bool:
        if not _is_netcdf(src) or _is_bom(src):
            return False
        try:
            with _open(src) as ds:
                return _pick_variable(ds) is not None
        except Exception:
            return False

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        return read_cf(src, self.name, options)


class BomNetcdfReader:
    name = "bom_netcdf"
    description = "BoM Rainfields netCDF (CF, accumulation in mm over start_time..valid_time)"

    def accepts(self, src: Source) -> bool:
        return _is_netcdf(src) and _is_bom(src)

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        return read_cf(src, self.name, options)


READERS.register(CfNetcdfReader.name, CfNetcdfReader())
READERS.register(BomNetcdfReader.name, BomNetcdfReader())
