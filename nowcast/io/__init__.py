"""Radar file readers: one per format, format sniffed from content.

``read_radar(path) -> DataArray(time=1, y, x)`` float32 rain rate (mm/h), NaN = no coverage,
0 = observed dry, CRS attached, time = valid time (UTC). See ``docs/readers.md``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import xarray as xr

from nowcast.io.base import READERS, RadarReader, ReaderError, Source, as_reader
from nowcast.io.sniff import sniff

__all__ = ["READERS", "RadarReader", "ReaderError", "read_radar", "read_radolan_rv", "sniff"]

log = logging.getLogger(__name__)

_BUILTIN_MODULES = ("odim", "knmi", "mch", "fmi", "netcdf", "mrms", "radolan", "unica")


def _load_builtins() -> None:
    """Import the built-in reader modules (each registers itself in READERS)."""
    import importlib

    for mod in _BUILTIN_MODULES:
        importlib.import_module(f"nowcast.io.{mod}")


def read_radar(path: str | Path, *, reader: str | None = None, **options: Any) -> xr.DataArray:
    """Read one radar file into a frame ``DataArray(time=1, y, x)`` float32, mm/h.

    ``reader`` forces a registered reader instead of content sniffing. ``options`` go to the
    reader (e.g. ``zr=ZRRelation(...)``, ``dry_dbz=...``, ``quantity="DBZH"`` for ODIM).
    Every failure is raised as :class:`ReaderError` naming the file and the reason.
    """
    from nowcast.io.sniff import sniff_source

    _load_builtins()
    src = Source.open_path(path)
    name = reader or sniff_source(src)
    try:
        rdr = as_reader(READERS.get(name))
    except KeyError as exc:
        raise ReaderError(path, str(exc)) from None
    try:
        da = rdr.read(src, **options)
    except ReaderError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # truncated / corrupt content surfaces as many exception types
        raise ReaderError(path, f"{name}: {type(exc).__name__}: {exc}") from exc
    log.debug("read %s with %s: %s", path, name, dict(da.sizes))
    return da


def read_radolan_rv(path: str | Path, **options: Any) -> xr.DataArray:
    """DWD RADVOR RV archive (tar, optionally bz2) -> ``DataArray(lead_time, y, x)`` mm/h.

    Coordinates: ``lead_time`` (timedelta64), ``time`` (valid time per lead) and scalar
    ``init_time``. See :func:`nowcast.io.radolan.read_rv_archive`.
    """
    from nowcast.io.radolan import read_rv_archive

    try:
        return read_rv_archive(Source.open_path(path), **options)
    except ReaderError:
        raise
    except Exception as exc:
        raise ReaderError(path, f"radolan RV: {type(exc).__name__}: {exc}") from exc
