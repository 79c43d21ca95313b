"""FMI radar composites: gzipped PGM (dBZ, polar stereographic) and GeoTIFF (dBZ, EPSG:3067).

PGM: ``dBZ = (DN - 64) / 2``; DN = maxval (255) -> NaN (no coverage); georeference from the
``# projection`` comment block (stereographic; earth radius and false easting/northing as in
pysteps, which the PGM omits). GeoTIFF: read with tifffile (no GDAL); ``dBZ = gain*DN + offset``
from the embedded GDAL metadata (0.5, -32); DN 0 (undetect) -> 0 mm/h, DN 255 (nodata) -> NaN.
"""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast.io.base import (
    READERS,
    ReaderError,
    Source,
    dbz_to_rate,
    edges_to_centres,
    finish_frame,
)


def _dbz_to_rate(dbz: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    return dbz_to_rate(dbz, options)


def _parse_pgm(data: bytes, path: str) -> tuple[dict[str, list[str]], np.ndarray]:
    """Binary PGM (P5) with ``#`` comment metadata -> (metadata, uint8/uint16 image)."""
    if not data.startswith(b"P5"):
        raise ReaderError(path, "not a binary PGM (P5)")
    meta: dict[str, list[str]] = {}
    tokens: list[int] = []
    pos = 2
    n = len(data)
    while len(tokens) < 3:
        while pos < n and data[pos : pos + 1].isspace():
            pos += 1
        if pos >= n:
            raise ReaderError(path, "truncated PGM header")
        if data[pos : pos + 1] == b"#":
            end = data.find(b"\n", pos)
            if end < 0:
                raise ReaderError(path, "truncated PGM header")
            parts = data[pos + 1 : end].decode("latin-1").strip().split()
            if len(parts) >= 2:
                meta[parts[0]] = parts[1:]
            pos = end + 1
            continue
        start = pos
        while pos < n and data[pos : pos + 1].isdigit():
            pos += 1
        if start == pos:
            raise ReaderError(path, f"bad PGM header byte {data[pos:pos + 1]!r}")
        tokens.append(int(data[start:pos]))
    pos += 1  # single whitespace after maxval
    width, height, maxval = tokens
    dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2")
    need = width * height * dtype.itemsize
    if n - pos < need:
        raise ReaderError(path, f"truncated PGM data: {n - pos} of {need} bytes")
    img = np.frombuffer(data, dtype=dtype, count=width * height, offset=pos).reshape(height, width)
    meta["_maxval"] = [str(maxval)]
    return meta, img


class FmiPgmReader:
    name = "fmi_pgm"
    description = "FMI PGM composite (dBZ)"

    def accepts(self, src: Source) -> bool:
        return src.head.startswith(b"P5") and b"# obstime" in src.head and b"# projection" in src.head

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        from pyproj import Proj

        path = str(src.path)
        meta, img = _parse_pgm(src.data(), path)
        if meta.get("type", [""])[0] != "stereographic":
            raise ReaderError(path, f"unsupported FMI PGM projection {meta.get('type')}")
        proj = (
            f"+proj=stere +lon_0={float(meta['centrallongitude'][0])} +lat_0={float(meta['centrallatitude'][0])} "
            f"+lat_ts={float(meta['truelatitude'][0])} +a=6371288 +x_0=380886.310 +y_0=3395677.920 +units=m +no_defs"
        )
        p = Proj(proj)
        ll_lon, ll_lat = (float(v) for v in meta["bottomleft"][:2])
        ur_lon, ur_lat = (float(v) for v in meta["topright"][:2])
        x1, _ = p(ll_lon, ll_lat)
        _, y2 = p(ur_lon, ur_lat)
        dx, dy = float(meta["metersperpixel_x"][0]), float(meta["metersperpixel_y"][0])
        ny, nx = img.shape
        x = edges_to_centres(x1, dx, nx)
        y = edges_to_centres(y2, -dy, ny)
        missing = img == int(meta["_maxval"][0])
        dbz = (img.astype(np.float32) - 64.0) / 2.0
        rate = _dbz_to_rate(dbz, options)
        rate[missing] = np.nan
        time = pd.Timestamp(pd.to_datetime(meta["obstime"][0], format="%Y%m%d%H%M"))
        return finish_frame(
            rate, x=x, y=y, crs=proj, time=time, src=src, source_format=self.name,
            quantity=" ".join(meta.get("param", ["dBZ"])) + " (dBZ)", product=" ".join(meta.get("productname", [""])),
        )


_ITEM = re.compile(r'<Item name="([^"]+)"[^>]*>([^<]*)</Item>')


def _gdal_items(text: str) -> dict[str, str]:
    for _ in range(3):  # FMI nests an escaped GDALMetadata inside an item
        text = html.unescape(text)
    return {k: v.strip() for k, v in _ITEM.findall(text)}


class FmiGeoTiffReader:
    name = "fmi_geotiff"
    description = "FMI GeoTIFF composite (uint8 dBZ, EPSG:3067)"

    def accepts(self, src: Source) -> bool:
        if src.head[:4] not in (b"II*\x00", b"MM\x00*"):
            return False
        try:
            import tifffile

            with tifffile.TiffFile(src.open()) as t:
                tags = t.pages[0].tags
                if "GDAL_METADATA" not in tags or "ModelTiepointTag" not in tags:
                    return False
                items = _gdal_items(str(tags["GDAL_METADATA"].value))
                return "Observation time" in items and "Gain" in items
        except Exception:
            return False

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        import tifffile

        path = str(src.path)
        with tifffile.TiffFile(src.open()) as t:
            page = t.pages[0]
            tags = page.tags
            items = _gdal_items(str(tags["GDAL_METADATA"].value))
            geo = t.geotiff_metadata or {}
            dn = page.asarray()
        epsg = geo.get("ProjectedCSTypeGeoKey")
        if epsg is None or int(epsg) in (0, 32767):
            raise ReaderError(path, "GeoTIFF without an EPSG ProjectedCSTypeGeoKey")
        sx, sy = (float(v) for v in geo["ModelPixelScale"][:2])
        tie = [float(v) for v in geo["ModelTiepoint"][:6]]
        if tie[0] != 0 or tie[1] != 0:
            raise ReaderError(path, f"unsupported tiepoint {tie}")
        is_point = int(geo.get("GTRasterTypeGeoKey", 1)) == 2
        ny, nx = dn.shape
        x0, y0 = (tie[3] - sx / 2, tie[4] + sy / 2) if is_point else (tie[3], tie[4])
        x = edges_to_centres(x0, sx, nx)
        y = edges_to_centres(y0, -sy, ny)
        gain, offset = float(items["Gain"]), float(items["Offset"])
        nodata = int(float(items.get("Nodata", 255)))
        undetect = int(float(items.get("Undetect", 0)))
        if dn.dtype != np.uint8:
            raise ReaderError(path, f"expected uint8 data, got {dn.dtype}")
        lut = _dbz_to_rate(np.arange(256, dtype=np.float32) * gain + offset, options)  # DN -> mm/h
        lut[undetect] = 0.0
        lut[nodata] = np.nan
        rate = lut[dn]
        time = pd.Timestamp(pd.to_datetime(items["Observation time"], format="%Y%m%d%H%M"))
        return finish_frame(
            rate, x=x, y=y, crs=f"EPSG:{int(epsg)}", time=time, src=src, source_format=self.name,
            quantity=f"{items.get('Quantity', 'reflectivity')} (dBZ = {gain}*DN + {offset})", product="composite",
        )


READERS.register(FmiPgmReader.name, FmiPgmReader())
READERS.register(FmiGeoTiffReader.name, FmiGeoTiffReader())
