"""MeteoSwiss palette-quantised GIF composites (AQC/CPC: 5-min accumulation in mm).

Mapping of palette indices to values follows pysteps' ``import_mch_gif`` (AQC/CPC lookup:
mm = (10**((i - 71.5)/20) / 316) ** (1/1.5), indices 0-1 and 251-254 are 0, 255 no coverage);
the product name, time and accumulation length come from the GIF comment
(``PRDT=AQCyydddHHMM``, ``ACCUm=``), not from the file name. The Swiss CCS4 domain
(somerc, 710x640 km at 1 km) is fixed (the GIF carries no georeference).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import transforms
from nowcast.io.base import READERS, ReaderError, Source, edges_to_centres, finish_frame

CCS4_PROJ = (
    "+proj=somerc +lon_0=7.43958333333333 +lat_0=46.9524055555556 +k_0=1 +x_0=600000 +y_0=200000 "
    "+ellps=bessel +towgs84=674.374,15.056,405.346,0,0,0,0 +units=m +no_defs"
)
CCS4_BOUNDS = (255000.0, -160000.0, 965000.0, 480000.0)  # xmin, ymin, xmax, ymax (edges, m)
_PRDT = re.compile(rb"PRDT=([A-Z]{3})(\d{2})(\d{3})(\d{4})")
_ACCU = re.compile(rb"ACCUm=(\d+)")


def aqc_lut() -> np.ndarray:
    """256-entry lookup: palette index -> accumulation (mm per interval); NaN = no coverage."""
    i = np.arange(256, dtype=np.float64)
    lut = (10.0 ** ((i - 71.5) / 20.0) / 316.0) ** (1.0 / 1.5)
    lut[(i < 2) | ((i > 250) & (i < 255))] = 0.0
    lut[255] = np.nan
    return lut


class MchGifReader:
    name = "mch_gif"
    description = "MeteoSwiss GIF composite (AQC/CPC)"

    def accepts(self, src: Source) -> bool:
        return src.head[:6] in (b"GIF87a", b"GIF89a") and _PRDT.search(src.head) is not None

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        from PIL import Image

        path = str(src.path)
        with Image.open(src.open()) as img:
            img.load()
            comment = img.info.get("comment", b"")
            idx = np.asarray(img)
        m = _PRDT.search(comment or src.head)
        if not m:
            raise ReaderError(path, "GIF comment has no PRDT product/time")
        product = m.group(1).decode()
        if product not in ("AQC", "CPC"):
            raise ReaderError(path, f"unsupported MeteoSwiss product {product} (AQC, CPC supported)")
        yy, doy, hhmm = int(m.group(2)), int(m.group(3)), m.group(4).decode()
        time = pd.Timestamp(2000 + yy, 1, 1) + pd.Timedelta(days=doy - 1, hours=int(hhmm[:2]), minutes=int(hhmm[2:]))
        a = _ACCU.search(comment or b"")
        minutes = int(a.group(1)) if a else 5
        if idx.shape != (640, 710):
            raise ReaderError(path, f"unexpected image size {idx.shape}, CCS4 is (640, 710)")
        acc = aqc_lut()[idx]
        rate = transforms.accumulation_to_rainrate(acc, pd.Timedelta(minutes=minutes))
        xmin, ymin, xmax, ymax = CCS4_BOUNDS
        x = edges_to_centres(xmin, 1000.0, 710)
        y = edges_to_centres(ymax, -1000.0, 640)
        return finish_frame(
            rate, x=x, y=y, crs=CCS4_PROJ, time=time, src=src, source_format=self.name,
            quantity=f"accumulation mm/{minutes}min (palette index)", product=product,
            extra_attrs={"accumulation_minutes": minutes},
        )


READERS.register(MchGifReader.name, MchGifReader())
