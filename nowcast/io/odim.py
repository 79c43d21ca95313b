"""ODIM HDF5 composites (OPERA ODYSSEY / NIMBUS / CIRRUS, RMI, DWD) and the Perser X-band image.

ODIM stores ``raw`` values with ``gain``/``offset``/``nodata``/``undetect`` in a ``what``
group that may sit at ``datasetN/what`` *or* ``datasetN/dataM/what`` (both are searched, the
innermost wins). ``nodata`` -> NaN (no coverage), ``undetect`` -> 0 mm/h (observed dry).
Quantities: RATE (mm/h) as is, ACRR (mm over start..end) -> rate, DBZH/TH/DBZ -> rate by
Z-R (Marshall-Palmer unless given). A file holding several quantities (e.g. RATE + QIND,
CIRRUS DBZH + quality) is searched for the preferred one, never "the first dataset".
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)


#: quantities we can turn into rain rate, in order of preference
RATE_QUANTITIES = ("RATE", "ACRR", "DBZH", "TH", "DBZ", "DBZV")
REFLECTIVITY = {"DBZH", "TH", "DBZ", "DBZV"}


def _snap(v: float, scale: float) -> float:
    """Snap a projected corner to a multiple of half a cell when within 1% of a cell of it
    (lon/lat corners round-trip with metre-level noise, e.g. 2.5 m in OPERA NIMBUS)."""
    half = scale / 2.0
    snapped = round(v / half) * half
    return snapped if abs(snapped - v) < 0.01 * scale else v


def _attrs(f: Any, path: str) -> dict[str, Any]:
    return dict(f[path].attrs) if path in f else {}


def _is_odim(info: dict[str, Any]) -> bool:
    conv = info["attrs"].get("Conventions")
    return conv is not None and decode_str(conv).upper().startswith("ODIM_H5")


def _parse_time(date: Any, time: Any) -> pd.Timestamp:
    d, t = decode_str(date), decode_str(time)
    return pd.Timestamp(pd.to_datetime(d + t.ljust(6, "0")[:6], format="%Y%m%d%H%M%S"))


def _candidates(f: Any) -> list[tuple[str, dict[str, Any]]]:
    """(data path, merged what attrs) for every datasetN/dataM/data in the file."""
    root_what = _attrs(f, "what")
    out = []
    for ds in sorted((k for k in f if k.startswith("dataset")), key=lambda k: int(k[7:] or 0)):
        ds_what = _attrs(f, f"{ds}/what")
        for dm in sorted((k for k in f[ds] if k.startswith("data") and k[4:].isdigit()), key=lambda k: int(k[4:])):
            if "data" not in f[ds][dm]:
                continue
            merged = {**root_what, **ds_what, **_attrs(f, f"{ds}/{dm}/what")}
            out.append((f"{ds}/{dm}", merged))
    return out


def _select(f: Any, quantity: str | None, path: str) -> tuple[str, dict[str, Any]]:
    cands = _candidates(f)
    by_q: dict[str, tuple[str, dict[str, Any]]] = {}
    for p, what in cands:
        q = decode_str(what.get("quantity", b"")).upper()
        by_q.setdefault(q, (p, what))
    wanted = [quantity.upper()] if quantity else list(RATE_QUANTITIES)
    for q in wanted:
        if q in by_q:
            return by_q[q]
    raise ReaderError(path, f"no usable quantity (wanted {wanted}); file holds {sorted(by_q) or 'no data'}")


def _decode(raw: np.ndarray, what: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(physical values float32 with nodata -> NaN, undetect mask); flags compared on ``raw``."""
    gain = scalar(what.get("gain", 1.0))
    offset = scalar(what.get("offset", 0.0))
    masks = {}
    for key in ("nodata", "undetect"):
        flag = scalar(what[key]) if key in what else np.nan
        # NaN flags cannot be compared; the caller handles them (format-specific semantics)
        masks[key] = raw == flag if not np.isnan(flag) else np.zeros(raw.shape, dtype=bool)
    val = raw.astype(np.float32)
    if gain != 1.0 or offset != 0.0:
        val *= np.float32(gain)
        val += np.float32(offset)
    val[masks["nodata"]] = np.nan
    val[masks["undetect"]] = np.nan  # converted to 0 after the quantity conversion
    return val, masks["undetect"]


def _to_rate(val: np.ndarray, undetect: np.ndarray, q: str, what: dict[str, Any], options: dict[str, Any], path: str) -> np.ndarray:
    if q == "RATE":
        rate = val
    elif q == "ACRR":
        start = _parse_time(what["startdate"], what["starttime"])
        end = _parse_time(what["enddate"], what["endtime"])
        if end <= start:
            raise ReaderError(path, f"ACRR with non-positive interval {start}..{end}")
        rate = transforms.accumulation_to_rainrate(val, end - start)
    elif q in REFLECTIVITY:
        rate = dbz_to_rate(val, options)
    else:  # pragma: no cover - _select only returns known quantities
        raise ReaderError(path, f"quantity {q} cannot be converted to rain rate")
    rate = np.asarray(rate, dtype=np.float32)
    rate[undetect] = 0.0
    return rate


class OdimReader:
    """ODIM_H5 composite (object COMP/IMAGE with a ``projdef``)."""

    name = "odim_hdf5"
    description = "ODIM HDF5 composite (OPERA ODYSSEY/NIMBUS/CIRRUS, RMI, DWD)"

    def accepts(self, src: Source) -> bool:
        info = h5_info(src)
        if info is None or not _is_odim(info):
            return False
        return "projdef" in info["groups"].get("where", {}) or info["dataset_projdef"]

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        import h5py

        path = str(src.path)
        with h5py.File(src.h5_target(), "r") as f:
            dpath, what = _select(f, options.get("quantity"), path)
            q = decode_str(what.get("quantity", b"")).upper()
            ds = dpath.split("/")[0]
            where = {**_attrs(f, "where"), **_attrs(f, f"{ds}/where")}
            raw = f[f"{dpath}/data"][()]
            root_what = _attrs(f, "what")
            ds_what = _attrs(f, f"{ds}/what")
        if "projdef" not in where:
            raise ReaderError(path, "ODIM file without where/projdef")
        ny, nx = raw.shape
        xsize, ysize = int(scalar(where.get("xsize", nx))), int(scalar(where.get("ysize", ny)))
        if (ysize, xsize) != (ny, nx):
            raise ReaderError(path, f"data shape {raw.shape} disagrees with where xsize/ysize {(ysize, xsize)}")
        xscale, yscale = scalar(where["xscale"]), scalar(where["yscale"])
        projdef = decode_str(where["projdef"])
        if "UL_x" in where and "UL_y" in where:
            ulx, uly = scalar(where["UL_x"]), scalar(where["UL_y"])
        else:
            from pyproj import Proj

            ulx, uly = Proj(projdef)(scalar(where["UL_lon"]), scalar(where["UL_lat"]))
            # corners are outer pixel edges, given in lon/lat with limited precision
            ulx, uly = _snap(ulx, xscale), _snap(uly, yscale)
        x = edges_to_centres(ulx, xscale, nx)
        y = edges_to_centres(uly, -yscale, ny)
        val, undetect = _decode(raw, what)
        rate = _to_rate(val, undetect, q, {**what, **ds_what}, options, path)
        time = _parse_time(root_what["date"], root_what["time"])
        product = decode_str(ds_what.get("prodname", ds_what.get("product", root_what.get("object", b""))))
        return finish_frame(
            rate, x=x, y=y, crs=projdef, time=time, src=src, source_format=self.name, quantity=q, product=product,
            extra_attrs={"odim_source": decode_str(root_what.get("source", b""))},
        )


class PerserReader:
    """University of Cagliari "Perser" X-band ODIM-like HDF5 (single radar, dBZ, big-endian float32).

    The file has no projection: the grid is a square centred on the radar (``where/lat``,
    ``where/lon``) with ``xscale`` km cells; we use an azimuthal equidistant projection
    there (metres) and assume the image is north-up (row 0 = north).
    ``nodata`` and ``undetect`` are both NaN in these files, so they cannot be told apart
    from the flag: NaN *inside* the radar's range circle (radius = half the image width,
    120 km; no echo was ever found beyond 119.9 km) means "no echo" -> 0 mm/h, NaN outside
    the circle means no coverage -> NaN.
    """

    name = "perser_hdf5"
    description = "University of Cagliari Perser X-band (ODIM-like HDF5, dBZ)"

    def accepts(self, src: Source) -> bool:
        info = h5_info(src)
        if info is None or not _is_odim(info):
            return False
        w = info["groups"].get("where", {})
        dsw = info["groups"].get("dataset1/where", {})
        return "projdef" not in w and {"lat", "lon"} <= set(w) and {"xscale", "xsize"} <= set(dsw) and not info["dataset_projdef"]

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        import h5py

        path = str(src.path)
        with h5py.File(src.h5_target(), "r") as f:
            dpath, what = _select(f, options.get("quantity"), path)
            q = decode_str(what.get("quantity", b"")).upper()
            raw = f[f"{dpath}/data"][()].astype(np.float64)
            w, dsw = _attrs(f, "where"), _attrs(f, "dataset1/where")
            root_what, ds_what = _attrs(f, "what"), _attrs(f, "dataset1/what")
        ny, nx = raw.shape
        cell = scalar(dsw["xscale"]) * 1000.0  # km -> m
        cell_y = scalar(dsw.get("yscale", dsw["xscale"])) * 1000.0
        lat, lon = scalar(w["lat"]), scalar(w["lon"])
        crs = f"+proj=aeqd +lat_0={lat:.6f} +lon_0={lon:.6f} +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
        x = edges_to_centres(-nx * cell / 2, cell, nx)
        y = edges_to_centres(ny * cell_y / 2, -cell_y, ny)
        nan_in = np.isnan(raw)
        val, undetect = _decode(raw, {k: v for k, v in what.items() if k in ("gain", "offset")})
        rate = _to_rate(val, undetect, q, {**what, **ds_what}, options, path)
        radius = min(nx * cell, ny * cell_y) / 2
        inside = (x[None, :] ** 2 + y[:, None] ** 2) <= radius**2
        rate[nan_in & inside] = 0.0
        rate[~inside] = np.nan
        time = _parse_time(root_what["date"], root_what["time"])
        product = decode_str(ds_what.get("prodname", ds_what.get("product", b"")))
        return finish_frame(
            rate, x=x, y=y, crs=crs, time=time, src=src, source_format=self.name, quantity=q, product=product,
            extra_attrs={"range_m": radius},
        )


READERS.register(OdimReader.name, OdimReader())
READERS.register(PerserReader.name, PerserReader())
