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

__all__ = ["EXAMPLES", "READERS", "RadarReader", "ReaderError", "formats_help", "read_radar", "read_radolan_rv", "sniff"]

log = logging.getLogger(__name__)

_BUILTIN_MODULES = ("odim", "knmi", "mch", "fmi", "netcdf", "mrms", "radolan", "unica", "gridded")


#: reader name -> one example ``nowcast import`` command on the files in ../shared/data
#: (listed by ``nowcast import --help`` and the README; tests check each path sniffs to its reader)
EXAMPLES: dict[str, str] = {
    "odim_hdf5": "nowcast import ../shared/data/radar/rmi/20210704 --store var/rmi.zarr",
    "perser_hdf5": "nowcast import ../shared/data/radar/perser-xband/20250416 --store var/perser.zarr",
    "knmi_hdf5": "nowcast import ../shared/data/radar/knmi/20100826 --store var/knmi.zarr",
    "mch_gif": "nowcast import ../shared/data/radar/mch/20150515 --store var/mch.zarr",
    "fmi_pgm": "nowcast import ../shared/data/radar/fmi/20160928 --store var/fmi.zarr",
    "fmi_geotiff": "nowcast import ../shared/data/radar/fmi-geotiff/20160928 --store var/fmi250.zarr --downsample 4",
    "bom_netcdf": "nowcast import ../shared/data/radar/bom/20201031 --store var/bom.zarr",
    "cf_netcdf": "curl -o frame.nc 'http://127.0.0.1:8000/v1/maps/rain/latest?format=nc' && nowcast import frame.nc --store var/cf.zarr",
    "mrms_grib2": "nowcast import ../shared/data/radar/mrms/20190610 --store var/mrms.zarr --cadence 2min --downsample 4",
    "radolan": "nowcast import ../shared/data/radar/radolan/20140810/raa01-rw_10000-1408102050-dwd---bin.gz --store var/rw.zarr",
    "radolan_tar": "nowcast import ../shared/data/radar/radolan/20221018/DE1200_RV2210180700.tar.bz2 --store var/rv.zarr",
    "unica_png": "nowcast import ../shared/data/radar/unica-xband/20191111_0710 --store var/unica.zarr --downsample 4",
    "gridded": "nowcast import ../shared/data/radar/knmi/20100826 --product configs/products/knmi-nl25-rap.toml --store var/knmi-g.zarr",
}


def formats_help() -> str:
    """Every registered reader with its description and an example command (``nowcast import --help``)."""
    _load_builtins()
    lines = ["formats (sniffed from content; 'gridded' needs --product):"]
    for name, reader in READERS.items():
        lines.append(f"  {name:<12} {as_reader(reader).description}")
        lines.append(f"    e.g. {EXAMPLES.get(name, 'nowcast import FILES --store STORE')}")
    return "\n".join(lines)


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
    da.attrs["reader"] = name  # the registered reader that decoded the file (import provenance)
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
