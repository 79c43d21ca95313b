"""University of Cagliari X-band radar PNG (1024x1024, 60 m, 8-bit grey + alpha).

``dBZ = DN / 2.55 - 8.6`` where alpha > 127 (echo); alpha <= 127 means no echo. The image is
the square around the radar; the radar's coverage is the inscribed circle (pixel centres within
512.5 cells = 30.75 km of the image centre; over all 471 sample images no echo lies outside
it). So: no echo inside the circle -> 0 mm/h (observed dry), outside -> NaN (no coverage).
Grid: transverse Mercator lon_0 = 9 (Monte Mario / Italy zone 1 parameters, x 1478699-1540139 m,
y 4311475-4372915 m), north-up.

PNG carries no metadata, so this is the only reader that takes its time from the file name
(``YYYYMMDD_HHMM.png``); pass ``time=`` to override (e.g. for a renamed file).
"""

from __future__ import annotations

import re
import struct
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

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIZE = 1024
XMIN, XMAX, YMIN, YMAX = 1478699.0, 1540139.0, 4311475.0, 4372915.0
#: Monte Mario / Italy zone 1 (EPSG:3003) parameters: transverse Mercator, lon_0 = 9 E
CRS = "+proj=tmerc +lat_0=0 +lon_0=9 +k=0.9996 +x_0=1500000 +y_0=0 +ellps=intl +towgs84=-104.1,-49.1,-9.9,0.971,-2.917,0.714,-11.68 +units=m +no_defs"
_NAME_TIME = re.compile(r"(\d{8})_(\d{4})\.png$", re.IGNORECASE)


def _ihdr(head: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from the PNG IHDR chunk."""
    if not head.startswith(PNG_MAGIC) or head[12:16] != b"IHDR" or len(head) < 26:
        return None
    w, h, depth, ctype = struct.unpack(">IIBB", head[16:26])
    return w, h, depth, ctype


class UnicaPngReader:
    name = "unica_png"
    description = "University of Cagliari X-band PNG (grey + alpha, dBZ)"

    def accepts(self, src: Source) -> bool:
        return _ihdr(src.head) == (SIZE, SIZE, 8, 4)  # 8-bit grey + alpha, 1024x1024

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        from PIL import Image

        path = str(src.path)
        time = options.get("time")
        if time is None:
            m = _NAME_TIME.search(src.path.name)
            if not m:
                raise ReaderError(path, "PNG has no timestamp metadata and the name is not YYYYMMDD_HHMM.png; pass time=")
            time = pd.Timestamp(pd.to_datetime(m.group(1) + m.group(2), format="%Y%m%d%H%M"))
        with Image.open(src.open()) as img:
            img.load()
            if img.mode != "LA":
                raise ReaderError(path, f"expected grey+alpha PNG, got mode {img.mode}")
            arr = np.asarray(img)
        dn, alpha = arr[..., 0], arr[..., 1]
        echo = alpha > 127
        dbz = dn.astype(np.float32) / 2.55 - 8.6
        rate = dbz_to_rate(dbz, options)
        rate = np.where(echo, rate, np.float32(0.0)).astype(np.float32)
        cell_x = (XMAX - XMIN) / SIZE
        cell_y = (YMAX - YMIN) / SIZE
        x = edges_to_centres(XMIN, cell_x, SIZE)
        y = edges_to_centres(YMAX, -cell_y, SIZE)
        cx, cy = (XMIN + XMAX) / 2, (YMIN + YMAX) / 2
        # pixel centres up to 512.36 px from the centre hold echoes: the circle is radius 512.5 px
        inside = ((x[None, :] - cx) / cell_x) ** 2 + ((y[:, None] - cy) / cell_y) ** 2 <= (SIZE / 2 + 0.5) ** 2
        rate[~inside] = np.nan
        return finish_frame(
            rate, x=x, y=y, crs=CRS, time=time, src=src, source_format=self.name,
            quantity="DN (dBZ = DN/2.55 - 8.6 where alpha > 127)", product="X-band reflectivity",
            extra_attrs={"time_from": "file name" if options.get("time") is None else "caller"},
        )


READERS.register(UnicaPngReader.name, UnicaPngReader())
