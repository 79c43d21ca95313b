"""Lightning readers and gridding: GOES GLM L2 LCFA files and generic stroke lists.

Readers return :class:`Flashes` (one row per flash/stroke: UTC time, lat/lon in degrees,
optional type and peak current); :func:`grid_counts` turns them into counts per grid cell per
cadence interval: ``DataArray(time, y, x)`` float32 (:data:`nowcast.dims.LIGHTNING_UNITS`).

Interval convention (same as radar accumulations, valid at the *end*): the slot labelled
``T`` counts the flashes with ``T - cadence < time <= T``.

GLM L2 LCFA (netCDF4): flash positions are the energy-weighted centroids ``flash_lat`` /
``flash_lon``; the flash time is the product time plus ``flash_time_offset_of_first_event``
(packed ``int16`` with ``scale_factor``/``add_offset`` and possibly ``_Unsigned``; decoded here
exactly as netCDF4's auto mask-and-scale does, and the offset's own ``units`` string names the
reference time). Stroke lists: CSV with a header, or JSON lines, with fields ``time``, ``lat``,
``lon`` and optional ``type`` (e.g. CG/IC) and ``current`` (kA); common aliases are accepted.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.grid import Grid

log = logging.getLogger(__name__)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NETCDF3_MAGIC = b"CDF"

_ALIASES = {
    "time": ("time", "timestamp", "datetime", "date_time", "utc", "t"),
    "lat": ("lat", "latitude", "y"),
    "lon": ("lon", "longitude", "lng", "long", "x"),
    "type": ("type", "kind", "stroke_type", "cloud_type"),
    "current": ("current", "peak_current", "peakcurrent", "amplitude", "ka", "kiloamperes"),
}


class LightningError(ValueError):
    """A lightning file that cannot be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read lightning file {self.path}: {reason}")


@dataclass(frozen=True)
class Flashes:
    """Flashes or strokes: parallel 1-D arrays.

    time: datetime64[ns] (UTC, tz-naive); lat, lon: float64 degrees; kind: str (object)
    or None; current: float64 kA or None.
    """

    time: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    kind: np.ndarray | None = None
    current: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.time)
        for name in ("lat", "lon", "kind", "current"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"Flashes.{name} has {len(v)} values, time has {n}")

    def __len__(self) -> int:
        return int(len(self.time))

    @classmethod
    def empty(cls) -> Flashes:
        return cls(np.array([], dtype="datetime64[ns]"), np.array([], float), np.array([], float))

    @classmethod
    def concat(cls, parts: Sequence[Flashes]) -> Flashes:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        kind = None if any(p.kind is None for p in parts) else np.concatenate([p.kind for p in parts])  # type: ignore[misc]
        cur = None if any(p.current is None for p in parts) else np.concatenate([p.current for p in parts])  # type: ignore[misc]
        return cls(
            np.concatenate([p.time for p in parts]),
            np.concatenate([p.lat for p in parts]),
            np.concatenate([p.lon for p in parts]),
            kind,
            cur,
        )

    def select(self, mask: np.ndarray) -> Flashes:
        return Flashes(
            self.time[mask],
            self.lat[mask],
            self.lon[mask],
            None if self.kind is None else self.kind[mask],
            None if self.current is None else self.current[mask],
        )


# --------------------------------------------------------------------------- GLM L2 LCFA
def _decode_packed(var: Any) -> np.ndarray:
    """Raw netCDF variable -> float64 with _Unsigned, _FillValue/missing_value, scale/offset applied
    (the CF/NUG convention netCDF4 follows in auto mask-and-scale mode); masked values -> NaN."""
    raw = np.asarray(var[...])
    attrs = {a: var.getncattr(a) for a in var.ncattrs()}
    if str(attrs.get("_Unsigned", "false")).lower() == "true" and raw.dtype.kind == "i":
        raw = raw.view(raw.dtype.str.replace("i", "u"))
    invalid = np.zeros(raw.shape, dtype=bool)
    for key in ("_FillValue", "missing_value"):
        if key in attrs:
            fill = np.asarray(attrs[key])
            if raw.dtype.kind == "u" and fill.dtype.kind == "i":
                fill = fill.astype(fill.dtype.str.replace("i", "u"))
            invalid |= np.isin(raw, np.atleast_1d(fill).astype(raw.dtype))
    out = raw.astype(np.float64)
    if "scale_factor" in attrs:
        out = out * float(attrs["scale_factor"])
    if "add_offset" in attrs:
        out = out + float(attrs["add_offset"])
    out[invalid] = np.nan
    return out


_UNITS_RE = re.compile(r"^\s*(\w+)\s+since\s+(.+?)\s*$")
_UNIT_SCALE = {
    "milliseconds": "ms",
    "millisecond": "ms",
    "msec": "ms",
    "ms": "ms",
    "seconds": "s",
    "second": "s",
    "sec": "s",
    "s": "s",
    "microseconds": "us",
    "minutes": "min",
    "minute": "min",
}


def _parse_time_units(units: str) -> tuple[str, pd.Timestamp]:
    m = _UNITS_RE.match(units)
    if not m or m.group(1).lower() not in _UNIT_SCALE:
        raise ValueError(f"unsupported time units {units!r}")
    return _UNIT_SCALE[m.group(1).lower()], dims.to_utc_timestamp(pd.Timestamp(m.group(2).replace("Z", "")))


def read_glm_lcfa(path: str | Path, *, good_quality_only: bool = False) -> Flashes:
    """Flashes of a GOES GLM L2 LCFA netCDF file (lat/lon centroids, time of first event)."""
    import netCDF4

    p = Path(path)
    try:
        nc = netCDF4.Dataset(str(p), mode="r")
    except OSError as exc:
        raise LightningError(p, f"not a readable netCDF file ({exc})") from exc
    try:
        nc.set_auto_maskandscale(False)
        for name in ("flash_lat", "flash_lon", "flash_time_offset_of_first_event"):
            if name not in nc.variables:
                raise LightningError(p, f"no variable {name!r}: not a GLM L2 LCFA file")
        lat = _decode_packed(nc["flash_lat"])
        lon = _decode_packed(nc["flash_lon"])
        offset_var = nc["flash_time_offset_of_first_event"]
        offset = _decode_packed(offset_var)
        units = getattr(offset_var, "units", "")
        try:
            unit, base = _parse_time_units(units)
        except ValueError:
            # no usable reference in the units: fall back to product_time (seconds since 2000-01-01 12:00)
            ptime = nc["product_time"]
            punit, pbase = _parse_time_units(getattr(ptime, "units", "seconds since 2000-01-01 12:00:00"))
            base = pbase + pd.to_timedelta(float(_decode_packed(ptime)), unit=punit)  # type: ignore[arg-type]
            unit = "ms"
        keep = np.isfinite(lat) & np.isfinite(lon) & np.isfinite(offset)
        if good_quality_only and "flash_quality_flag" in nc.variables:
            keep &= _decode_packed(nc["flash_quality_flag"]) == 0
    except LightningError:
        raise
    except Exception as exc:  # corrupt / truncated content surfaces as many types
        raise LightningError(p, f"{type(exc).__name__}: {exc}") from exc
    finally:
        nc.close()
    times = (base.to_datetime64().astype("datetime64[ns]") + pd.to_timedelta(offset[keep], unit=unit).values)  # type: ignore[arg-type]
    log.debug("read %d GLM flashes from %s", int(keep.sum()), p.name)
    return Flashes(np.asarray(times, dtype="datetime64[ns]"), lat[keep], lon[keep])


def glm_time_coverage(path: str | Path) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(start, end) of a GLM file's observation period: from the ``_sYYYYJJJHHMMSSt_eYYYYJJJHHMMSSt``
    file-name fields, else from the ``time_coverage_start/end`` attributes."""
    name = Path(path).name
    m = re.search(r"_s(\d{4})(\d{3})(\d{2})(\d{2})(\d{2})(\d)_e(\d{4})(\d{3})(\d{2})(\d{2})(\d{2})(\d)", name)
    if m:
        g = m.groups()

        def ts(y: str, j: str, h: str, mi: str, s: str, tenth: str) -> pd.Timestamp:
            return pd.Timestamp(f"{y}-01-01") + pd.Timedelta(days=int(j) - 1, hours=int(h), minutes=int(mi), seconds=int(s), milliseconds=100 * int(tenth))

        return ts(*g[:6]), ts(*g[6:])
    import netCDF4

    with netCDF4.Dataset(str(path)) as nc:
        return (
            dims.to_utc_timestamp(nc.getncattr("time_coverage_start")),
            dims.to_utc_timestamp(nc.getncattr("time_coverage_end")),
        )


# --------------------------------------------------------------------------- stroke lists
def _column(names: Iterable[str], field: str) -> str | None:
    lower = {n.strip().lower(): n for n in names}
    for alias in _ALIASES[field]:
        if alias in lower:
            return lower[alias]
    return None


def _parse_times(values: Sequence[Any]) -> np.ndarray:
    """Strings (ISO 8601) or numbers (Unix seconds) -> datetime64[ns] UTC."""
    arr = list(values)
    if arr and all(isinstance(v, int | float) and not isinstance(v, bool) for v in arr):
        return pd.to_datetime(np.asarray(arr, dtype=float), unit="s").values.astype("datetime64[ns]")
    try:
        numeric = np.asarray(arr, dtype=float)
        return pd.to_datetime(numeric, unit="s").values.astype("datetime64[ns]")
    except (TypeError, ValueError):
        pass
    idx = pd.to_datetime(pd.Series(arr, dtype="object"), utc=True, format="ISO8601")
    return idx.dt.tz_convert(None).values.astype("datetime64[ns]")


def _records_to_flashes(records: list[dict[str, Any]], path: Path) -> Flashes:
    if not records:
        return Flashes.empty()
    keys = list(records[0].keys())
    cols = {f: _column(keys, f) for f in _ALIASES}
    for need in ("time", "lat", "lon"):
        if cols[need] is None:
            raise LightningError(path, f"no {need!r} column (have {keys})")
    try:
        times = _parse_times([r[cols["time"]] for r in records])  # type: ignore[index]
        lat = np.asarray([float(r[cols["lat"]]) for r in records])  # type: ignore[index]
        lon = np.asarray([float(r[cols["lon"]]) for r in records])  # type: ignore[index]
        kind = np.asarray([str(r.get(cols["type"], "") or "") for r in records], dtype=object) if cols["type"] else None  # type: ignore[arg-type]
        cur = (
            np.asarray([float(r[cols["current"]]) if r.get(cols["current"]) not in (None, "") else np.nan for r in records])  # type: ignore[arg-type]
            if cols["current"]
            else None
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LightningError(path, f"bad record: {type(exc).__name__}: {exc}") from exc
    bad = ~((np.abs(lat) <= 90) & (np.abs(lon) <= 360))
    if bad.any():
        raise LightningError(path, f"{int(bad.sum())} records with latitude/longitude out of range")
    lon = np.where(lon > 180, lon - 360, lon)
    return Flashes(times, lat, lon, kind, cur)


def read_strokes(path: str | Path) -> Flashes:
    """A stroke list: CSV with a header row, or JSON lines (one object per line)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise LightningError(p, str(exc)) from exc
    if raw[:2] == b"\x1f\x8b":
        import gzip

        raw = gzip.decompress(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LightningError(p, "not UTF-8 text: not a stroke list") from exc
    stripped = text.lstrip()
    if not stripped:
        return Flashes.empty()
    records: list[dict[str, Any]]
    if stripped.startswith("{"):
        records = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LightningError(p, f"line {i}: invalid JSON ({exc.msg})") from exc
                if not isinstance(obj, dict):
                    raise LightningError(p, f"line {i}: expected a JSON object")
                records.append(obj)
    else:
        records = list(csv.DictReader(io.StringIO(text)))
    return _records_to_flashes(records, p)


def read_lightning(path: str | Path) -> Flashes:
    """Any supported lightning file: GLM L2 LCFA (netCDF/HDF5 by magic bytes) or a stroke list."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise LightningError(p, str(exc)) from exc
    if head.startswith(HDF5_MAGIC) or head.startswith(NETCDF3_MAGIC):
        return read_glm_lcfa(p)
    return read_strokes(p)


# --------------------------------------------------------------------------- gridding
def slot_of(times: np.ndarray | pd.DatetimeIndex, cadence: pd.Timedelta | str = dims.DEFAULT_CADENCE) -> pd.DatetimeIndex:
    """The slot label of each time: the end of its interval, ``ceil(time / cadence)``."""
    return pd.DatetimeIndex(times).ceil(pd.Timedelta(cadence))


def grid_counts(
    flashes: Flashes,
    grid: Grid,
    cadence: pd.Timedelta | str = dims.DEFAULT_CADENCE,
    times: Iterable[object] | None = None,
) -> xr.DataArray:
    """Flash counts per grid cell per interval: ``DataArray(time, y, x)`` float32.

    Slot ``T`` counts flashes with ``T - cadence < time <= T``. ``times`` selects the slots to
    return (all zeros where there were none); by default every slot that has a flash. Flashes
    outside the grid or outside the requested slots are ignored.
    """
    cadence = pd.Timedelta(cadence)
    labels = slot_of(flashes.time, cadence)
    slots = dims.to_utc_index(times) if times is not None else pd.DatetimeIndex(sorted(set(labels))).as_unit("ns")
    ny, nx = grid.shape
    out = np.zeros((len(slots), ny, nx), dtype=np.float32)
    if len(flashes) and len(slots):
        pos = slots.get_indexer(labels)
        row, col, inside = grid.lonlat_to_index(flashes.lon, flashes.lat)
        ok = inside & (pos >= 0)
        flat = np.zeros(len(slots) * ny * nx, dtype=np.int64)
        np.add.at(flat, (pos[ok] * ny + row[ok]) * nx + col[ok], 1)
        out[:] = flat.reshape(out.shape)
    da = dims.make_frames(out, slots, grid.x, grid.y, grid.crs, name=dims.LIGHTNING, units=dims.LIGHTNING_UNITS)
    da.attrs["interval"] = f"({cadence} before time, time]"
    return da
