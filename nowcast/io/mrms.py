"""NOAA/NSSL MRMS GRIB2 (PrecipRate, mm/h) at full 0.01 deg resolution (no downsampling).

MRMS uses the local discipline 209; PrecipRate is category 6, number 1. Values below 0
(-3 = no coverage, -1 = missing) and bitmap-masked cells -> NaN. Grid: regular lon/lat,
cell centres from the GRIB grid definition (longitudes wrapped to -180..180), CRS EPSG:4326
(the GRIB earth shape is a sphere/IAU-1965 ellipsoid; the difference is immaterial at 1 km).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast.io.base import READERS, ReaderError, Source, finish_frame

MRMS_DISCIPLINE = 209
#: (category, number) -> (name, kind)
PARAMETERS = {(6, 1): ("PrecipRate", "rate")}


class MrmsGribReader:
    name = "mrms_grib2"
    description = "NOAA MRMS GRIB2 PrecipRate"

    def accepts(self, src: Source) -> bool:
        h = src.head
        return h[:4] == b"GRIB" and len(h) > 8 and h[7] == 2 and h[6] == MRMS_DISCIPLINE

    def _message(self, src: Source) -> Any:
        import pygrib

        if src.compression is None:
            g = pygrib.open(str(src.path))
            try:
                msg = g.message(1)
                msg.values  # noqa: B018 - decode while the file is open
                return msg
            finally:
                g.close()
        return pygrib.fromstring(src.data())

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        path = str(src.path)
        msg = self._message(src)
        key = (int(msg["parameterCategory"]), int(msg["parameterNumber"]))
        if key not in PARAMETERS:
            raise ReaderError(path, f"unsupported MRMS parameter category/number {key}; supported {sorted(PARAMETERS)}")
        pname, _ = PARAMETERS[key]
        if msg["gridType"] != "regular_ll":
            raise ReaderError(path, f"unsupported grid type {msg['gridType']}")
        nx, ny = int(msg["Ni"]), int(msg["Nj"])
        lon0 = float(msg["longitudeOfFirstGridPointInDegrees"])
        lat0 = float(msg["latitudeOfFirstGridPointInDegrees"])
        dlon = float(msg["iDirectionIncrementInDegrees"])
        dlat = float(msg["jDirectionIncrementInDegrees"])
        if int(msg["iScansNegatively"]):
            dlon = -dlon
        if not int(msg["jScansPositively"]):
            dlat = -dlat
        lon0 = ((lon0 + 180.0) % 360.0) - 180.0
        x = np.round(lon0 + dlon * np.arange(nx), 6)
        y = np.round(lat0 + dlat * np.arange(ny), 6)
        values = msg.values
        if np.ma.isMaskedArray(values):
            values = values.filled(np.nan)
        values = np.asarray(values, dtype=np.float32)
        if values.shape != (ny, nx):
            raise ReaderError(path, f"values shape {values.shape} != grid ({ny}, {nx})")
        with np.errstate(invalid="ignore"):
            values[values < 0] = np.nan
        time = pd.Timestamp(
            int(msg["year"]), int(msg["month"]), int(msg["day"]), int(msg["hour"]), int(msg["minute"]), int(msg["second"])
        ) + pd.Timedelta(hours=int(msg["forecastTime"]) if int(msg["indicatorOfUnitForForecastTime"]) == 1 else 0)
        return finish_frame(
            values, x=x, y=y, crs="EPSG:4326", time=time, src=src, source_format=self.name,
            quantity=f"{pname} (mm/h)", product=pname,
        )


READERS.register(MrmsGribReader.name, MrmsGribReader())
