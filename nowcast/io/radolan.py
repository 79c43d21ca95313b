"""DWD RADOLAN / RADVOR binary composites (RW, RY, RX, WX, RE, RV, ...), parsed without wradlib.

Header (ASCII, ends with ETX 0x03): product (2 chars), ``DDhhmm``, WMO number, ``MMYY``, then
keyed fields of variable width, e.g. ``BY`` (file length), ``VS`` (format version), ``SW``
(software), ``PR E-02`` (precision), ``INT`` (interval, min), ``GP 900x 900`` (rows x cols),
``VV`` (forecast lead, min), ``MF``, ``QN``, ``MS``/``ST`` (text in ``<...>``).

Data, south row first (we flip to north-up):

* 16-bit products (RW, RY, RE, RV, ...): little-endian uint16; bits 0-11 value (x precision),
  bit 12 (4096) "secondary data" (valid value, *not* 409.6 mm), bit 13 (8192) nodata -> NaN,
  bit 14 negative sign, bit 15 clutter -> NaN. Negative rain is set to 0.
* 8-bit products (RX, WX, EX): RVP6 units, dBZ = raw/2 - 32.5; 250 nodata -> NaN, 249 clutter -> NaN.

Grids (polar stereographic, true at 60 N, lon_0 10 E): 900x900 and 1100x900 on the RADOLAN
sphere (R = 6370.04 km), lower-left corners (-523.4622, -4658.6447) km and
(-443.4622, -4758.6447) km; DE1200 (1200x1100) on WGS84 with the false easting/northing DWD
uses in its ODIM files (lower-left edge (-500, -1199500) m).
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass, field
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
    edges_to_centres,
    finish_frame,
)

SPHERE = "+proj=stere +lat_0=90 +lat_ts=60 +lon_0=10 +a=6370040 +b=6370040 +x_0=0 +y_0=0 +units=m +no_defs"
DE1200 = (
    "+proj=stere +lat_0=90 +lat_ts=60 +lon_0=10 +a=6378137 +b=6356752.3142451802 "
    "+x_0=543196.83521776402 +y_0=3622588.8619310018 +units=m +no_defs"
)
#: (rows, cols) -> (proj, lower-left x edge, lower-left y edge) in metres
GRIDS: dict[tuple[int, int], tuple[str, float, float]] = {
    (900, 900): (SPHERE, -523462.2, -4658644.7),
    (1100, 900): (SPHERE, -443462.2, -4758644.7),
    (1200, 1100): (DE1200, -500.0, -1199500.0),
}
BYTE_PRODUCTS = {"RX", "WX", "EX", "PX"}
_PREFIX = re.compile(rb"^([A-Z][A-Z0-9])(\d{2})(\d{2})(\d{2})(\d{5})(\d{2})(\d{2})")
_KEYS = ("BY", "VS", "SW", "PR", "INT", "GP", "VV", "MF", "QN", "MS", "ST", "VR", "U", "CS")
_TEXT = re.compile(rb"(MS|ST)\s*(\d+)\s*<[^>]*>")


@dataclass
class RadolanHeader:
    product: str
    time: pd.Timestamp  # product (end) time as in the header
    fields: dict[str, str] = field(default_factory=dict)
    header_length: int = 0

    @property
    def precision(self) -> float:
        pr = self.fields.get("PR", "E-00").replace(" ", "")
        m = re.fullmatch(r"E([+-]?\d+)", pr)
        if not m:
            raise ValueError(f"bad PR precision field {pr!r}")
        return 10.0 ** int(m.group(1))

    @property
    def interval(self) -> pd.Timedelta:
        return pd.Timedelta(minutes=int(self.fields.get("INT", "0").strip() or 0))

    @property
    def lead(self) -> pd.Timedelta:
        return pd.Timedelta(minutes=int(self.fields.get("VV", "0").strip() or 0))

    @property
    def shape(self) -> tuple[int, int]:
        gp = self.fields.get("GP", "").replace(" ", "")
        m = re.fullmatch(r"(\d+)x(\d+)", gp)
        if not m:
            raise ValueError(f"bad GP dimension field {self.fields.get('GP')!r}")
        return int(m.group(1)), int(m.group(2))


def looks_like_radolan(head: bytes) -> bool:
    return bool(_PREFIX.match(head)) and b"\x03" in head[:2048] and b"GP" in head[: head.find(b"\x03") + 1]


def parse_header(data: bytes, path: str = "") -> RadolanHeader:
    """Parse the ASCII header; tolerant to field widths (``BY1620134`` and ``BY   1620201``)."""
    etx = data.find(b"\x03", 0, 4096)
    if etx < 0:
        raise ReaderError(path, "RADOLAN header without ETX terminator")
    head = data[:etx]
    m = _PREFIX.match(head)
    if not m:
        raise ReaderError(path, f"not a RADOLAN header: {head[:24]!r}")
    product = m.group(1).decode()
    day, hh, mm, _, month, yy = (int(g) for g in m.groups()[1:])
    time = pd.Timestamp(2000 + yy, month, day, hh, mm)
    rest = _TEXT.sub(b" ", head[m.end():]).decode("latin-1")
    fields: dict[str, str] = {}
    pattern = re.compile("(" + "|".join(sorted(_KEYS, key=len, reverse=True)) + ")")
    # keys are upper-case tokens; values run to the next key
    pos = 0
    parts = [(mm_.start(), mm_.group(1)) for mm_ in pattern.finditer(rest)]
    # keep only key hits that are not inside a value such as SW 'P300001H'
    accepted: list[tuple[int, str]] = []
    for start, key in parts:
        if start < pos:
            continue
        accepted.append((start, key))
        pos = start + len(key)
        if key == "SW":  # fixed 9-character software field may contain key-like letters
            pos += 9
        if key == "MF":
            pos += 9
    for i, (start, key) in enumerate(accepted):
        end = accepted[i + 1][0] if i + 1 < len(accepted) else len(rest)
        fields[key] = rest[start + len(key):end].strip()
    if "GP" not in fields:
        raise ReaderError(path, f"RADOLAN header without GP field: {head[:80]!r}")
    return RadolanHeader(product=product, time=time, fields=fields, header_length=etx + 1)


def decode_array(data: bytes, hdr: RadolanHeader, path: str = "") -> tuple[np.ndarray, str]:
    """(physical values, unit) north-up; NaN = nodata/clutter. Unit is 'dBZ' or 'mm'."""
    rows, cols = hdr.shape
    body = data[hdr.header_length:]
    if hdr.product in BYTE_PRODUCTS:
        need = rows * cols
        if len(body) < need:
            raise ReaderError(path, f"truncated RADOLAN data: {len(body)} of {need} bytes")
        raw = np.frombuffer(body, dtype=np.uint8, count=need).reshape(rows, cols)
        val = raw.astype(np.float32) / 2.0 - 32.5
        val[(raw == 250) | (raw == 249)] = np.nan
        return val[::-1], "dBZ"
    need = rows * cols * 2
    if len(body) < need:
        raise ReaderError(path, f"truncated RADOLAN data: {len(body)} of {need} bytes")
    raw = np.frombuffer(body, dtype="<u2", count=rows * cols).reshape(rows, cols)
    val = (raw & 0x0FFF).astype(np.float32) * np.float32(hdr.precision)
    negative = (raw & 0x4000) != 0
    val[negative] = -val[negative]
    val[(raw & 0x2000) != 0] = np.nan  # nodata
    val[(raw & 0x8000) != 0] = np.nan  # clutter
    return val[::-1], "mm"


def grid_for(shape: tuple[int, int], path: str = "") -> tuple[str, np.ndarray, np.ndarray]:
    """(proj, x centres, y centres north-up) of a RADOLAN grid of ``shape`` (rows, cols)."""
    if shape not in GRIDS:
        raise ReaderError(path, f"unknown RADOLAN grid {shape[0]}x{shape[1]}; known {sorted(GRIDS)}")
    proj, llx, lly = GRIDS[shape]
    rows, cols = shape
    x = edges_to_centres(llx, 1000.0, cols)
    y = edges_to_centres(lly + rows * 1000.0, -1000.0, rows)
    return proj, x, y


def to_rate(val: np.ndarray, unit: str, hdr: RadolanHeader, options: dict[str, Any], path: str = "") -> np.ndarray:
    if unit == "dBZ":
        return dbz_to_rate(val, options)
    if hdr.interval <= pd.Timedelta(0):
        raise ReaderError(path, f"{hdr.product}: accumulation without INT interval")
    return transforms.accumulation_to_rainrate(val, hdr.interval)


def read_member(data: bytes, src: Source, options: dict[str, Any], source_format: str) -> xr.DataArray:
    path = str(src.path)
    hdr = parse_header(data, path)
    val, unit = decode_array(data, hdr, path)
    rate = to_rate(val, unit, hdr, options, path)
    proj, x, y = grid_for(hdr.shape, path)
    valid = (hdr.time + hdr.lead).as_unit("ns")
    return finish_frame(
        rate, x=x, y=y, crs=proj, time=valid, src=src, source_format=source_format,
        quantity=f"{hdr.product} ({'RVP6 -> dBZ' if unit == 'dBZ' else f'mm per {int(hdr.interval.total_seconds() // 60)} min'}, "
        f"precision {hdr.precision:g})",
        product=hdr.product,
        extra_attrs={"issue_time": str(hdr.time), "lead_minutes": int(hdr.lead.total_seconds() // 60)},
    )


class RadolanReader:
    name = "radolan"
    description = "DWD RADOLAN / RADVOR binary composite (RW, RY, RX, WX, RE, RV...)"

    def accepts(self, src: Source) -> bool:
        return looks_like_radolan(src.head)

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        return read_member(src.data(), src, options, self.name)


def _tar_members(src: Source) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(src.data()), mode="r:") as tf:
        out = []
        for m in tf.getmembers():
            if not m.isfile():
                continue
            fh = tf.extractfile(m)
            if fh is None:
                continue
            out.append((m.name, fh.read()))
    return out


class RadolanTarReader:
    """A tar (usually ``.tar.bz2``) of RADOLAN members, e.g. the RADVOR RV nowcast (leads 0-120 min).

    :func:`read_radar` returns the member with the smallest lead (the analysis at issue time);
    :func:`read_rv_archive` / ``nowcast.io.read_radolan_rv`` return all leads.
    """

    name = "radolan_tar"
    description = "tar archive of RADOLAN/RADVOR members (e.g. DE1200 RV)"

    def accepts(self, src: Source) -> bool:
        h = src.head
        if len(h) < 512 or h[257:262] != b"ustar":
            return False
        return looks_like_radolan(h[512:])

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        members = _tar_members(src)
        if not members:
            raise ReaderError(str(src.path), "tar archive holds no files")
        heads = [(parse_header(data, str(src.path)).lead, data) for _, data in members]
        _, first = min(heads, key=lambda h: h[0])
        return read_member(first, src, options, self.name)


def read_rv_archive(src: Source, **options: Any) -> xr.DataArray:
    """All members of a RADOLAN tar -> ``DataArray(lead_time, y, x)`` float32 mm/h, sorted by lead.

    Coords: ``lead_time`` (timedelta64), ``time`` (valid time, along lead_time), scalar ``init_time``.
    """
    path = str(src.path)
    members = _tar_members(src)
    if not members:
        raise ReaderError(path, "tar archive holds no files")
    frames = [read_member(data, src, options, "radolan_tar") for _, data in members]
    issue = {f.attrs["issue_time"] for f in frames}
    if len(issue) != 1:
        raise ReaderError(path, f"members have different issue times {sorted(issue)}")
    init = pd.Timestamp(issue.pop()).as_unit("ns")
    frames.sort(key=lambda f: f.attrs["lead_minutes"])
    leads = pd.to_timedelta([f.attrs["lead_minutes"] for f in frames], unit="min")
    if leads.has_duplicates:
        raise ReaderError(path, "duplicate leads in archive")
    stacked = xr.concat([f.isel({dims.TIME: 0}, drop=True) for f in frames], dim=dims.LEAD_TIME)
    stacked = stacked.assign_coords({dims.LEAD_TIME: leads.values, dims.TIME: (dims.LEAD_TIME, (init + leads).values.astype("datetime64[ns]")),
                                     dims.INIT_TIME: init})
    attrs = dict(frames[0].attrs)
    attrs.pop("lead_minutes", None)
    attrs["outliers_masked"] = int(sum(f.attrs["outliers_masked"] for f in frames))
    stacked.attrs = attrs
    return stacked


READERS.register(RadolanReader.name, RadolanReader())
READERS.register(RadolanTarReader.name, RadolanTarReader())
