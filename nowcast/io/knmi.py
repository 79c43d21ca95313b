"""KNMI HDF5 radar composites (e.g. RAD_NL25_RAP_5min): 5-min accumulations -> rain rate.

Calibration from ``image1/calibration/calibration_formulas`` (``GEO=a*PV+b``);
``calibration_missing_data`` / ``calibration_out_of_image`` -> NaN (about 74% of the
NL25 grid is outside radar coverage). Coordinates come from the product corners projected
with the file's proj4 string, converted from the file's km units to metres.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import transforms
from nowcast.io.base import (
    READERS,
    ReaderError,
    Source,
    dbz_to_rate,
    decode_str,
    edges_to_centres,
    finish_frame,
    h5_info,
    scalar,
)

_FORMULA = re.compile(r"GEO\s*=\s*([-+0-9.eE]+)\s*\*\s*PV\s*([-+]\s*[0-9.eE]+)?")


def _km_to_m(proj4: str) -> str:
    """The KNMI proj4 string uses a=6378.137 (km); rewrite it in metres."""
    out = []
    for tok in proj4.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            if k in ("+a", "+b", "+x_0", "+y_0"):
                try:
                    tok = f"{k}={float(v) * 1000.0:.6f}"
                except ValueError:
                    pass
        out.append(tok)
    if not any(t.startswith("+units") for t in out):
        out.append("+units=m")
    return " ".join(out + ["+no_defs"])


def _parse_knmi_time(v: Any) -> pd.Timestamp:
    return pd.Timestamp(pd.to_datetime(decode_str(v), format="%d-%b-%Y;%H:%M:%S.%f"))


class KnmiReader:
    name = "knmi_hdf5"
    description = "KNMI HDF5 radar composite (accumulation in mm)"

    def accepts(self, src: Source) -> bool:
        info = h5_info(src)
        return info is not None and {"geographic", "image1", "overview"} <= set(info["keys"])

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        import h5py
        from pyproj import Proj

        path = str(src.path)
        with h5py.File(src.h5_target(), "r") as f:
            geo = dict(f["geographic"].attrs)
            proj4 = decode_str(f["geographic/map_projection"].attrs["projection_proj4_params"])
            img = dict(f["image1"].attrs)
            cal = dict(f["image1/calibration"].attrs)
            ov = dict(f["overview"].attrs)
            raw = f["image1/image_data"][()]
        quantity = decode_str(img.get("image_geo_parameter", b""))
        m = _FORMULA.search(decode_str(cal.get("calibration_formulas", b"")))
        if not m:
            raise ReaderError(path, f"unparsable calibration formula {cal.get('calibration_formulas')!r}")
        gain = float(m.group(1))
        offset = float(m.group(2).replace(" ", "")) if m.group(2) else 0.0
        val = raw.astype(np.float32) * gain + offset
        for key in ("calibration_missing_data", "calibration_out_of_image"):
            if key in cal:
                val[raw == int(scalar(cal[key]))] = np.nan
        start, end = _parse_knmi_time(ov["product_datetime_start"]), _parse_knmi_time(ov["product_datetime_end"])
        if "ACCUMULATED" in quantity.upper():
            rate = transforms.accumulation_to_rainrate(val, end - start)
        elif "REFLECTIVITY" in quantity.upper() or "DBZ" in quantity.upper():
            rate = dbz_to_rate(val, options)
        else:
            raise ReaderError(path, f"unsupported KNMI quantity {quantity!r}")
        ny, nx = raw.shape
        if (int(scalar(geo["geo_number_rows"])), int(scalar(geo["geo_number_columns"]))) != (ny, nx):
            raise ReaderError(path, "image size disagrees with geographic/geo_number_rows/columns")
        corners = np.asarray(geo["geo_product_corners"], dtype=np.float64).reshape(4, 2)  # LL, UL, UR, LR lon/lat
        p = Proj(proj4)  # km units as stored
        ulx, uly = p(corners[1, 0], corners[1, 1])
        dx = scalar(geo["geo_pixel_size_x"])
        dy = scalar(geo["geo_pixel_size_y"])  # negative: rows go south
        x = edges_to_centres(round(ulx, 2), dx, nx) * 1000.0
        y = edges_to_centres(round(uly, 2), dy, ny) * 1000.0
        return finish_frame(
            rate, x=x, y=y, crs=_km_to_m(proj4), time=end, src=src, source_format=self.name,
            quantity=quantity, product=decode_str(img.get("image_product_name", b"")),
            extra_attrs={"accumulation_start": str(start)},
        )


READERS.register(KnmiReader.name, KnmiReader())
