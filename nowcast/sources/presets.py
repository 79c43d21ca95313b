"""URL presets of public radar providers for the ``http`` source.

A preset expands to ``url`` (a template: ``{name}`` fields from the preset options first, then
``strftime`` placeholders from the slot time, UTC), an optional ``latest_url`` alias and the
provider's ``cadence``. Choose one in the ingest configuration (``preset = "dwd-hx"``) and
override any field (``url``, ``base_url``, ``cadence``) there.

Paths follow the providers' public listings at the time of writing; providers rename files
now and then (DWD moved RADOLAN from its binary format to ODIM HDF5 after 2025-11-30), so
check the listing and override ``url`` when needed. Nothing here is fetched at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nowcast.registry import UnknownNameError


@dataclass(frozen=True)
class Preset:
    """A provider's URL template, latest alias and cadence."""

    url: str
    cadence: str
    description: str
    latest_url: str | None = None
    defaults: dict[str, str] = field(default_factory=dict)

    def expand(self, **options: Any) -> dict[str, Any]:
        """``{"url", "latest_url", "cadence"}`` with ``{field}`` placeholders filled from
        ``defaults`` updated by ``options`` (e.g. ``base_url``); strftime fields stay."""
        values = {**self.defaults, **{k: str(v) for k, v in options.items()}}
        missing = [k for k in _fields(self.url) if k not in values]
        if missing:
            raise ValueError(f"preset needs option(s) {missing} (e.g. base_url of the mirror/bucket)")
        return {
            "url": self.url.format(**values),
            "latest_url": self.latest_url.format(**values) if self.latest_url else None,
            "cadence": values.get("cadence", self.cadence),
        }


def _fields(template: str) -> list[str]:
    import string

    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


DWD = "https://opendata.dwd.de/weather/radar"
PRESETS: dict[str, Preset] = {
    # DWD open data (Germany). ODIM HDF5 composites and RADOLAN products.
    "dwd-hx": Preset(
        url="{base_url}/composite/hx/composite_hx_%Y%m%d_%H%M-hd5",
        latest_url="{base_url}/composite/hx/composite_hx_LATEST-hd5",
        cadence="5min",
        description="DWD HX reflectivity composite (ODIM HDF5, dBZ), 5 min",
        defaults={"base_url": DWD},
    ),
    "dwd-radolan-ry": Preset(
        url="{base_url}/radolan/ry/raa01-ry_10000-%y%m%d%H%M-dwd---bin{suffix}",
        latest_url="{base_url}/radolan/ry/raa01-ry_10000-latest-dwd---bin{suffix}",
        cadence="5min",
        description="DWD RADOLAN RY 5-min quasi-adjusted precipitation (suffix '.hdf5' for the ODIM edition, '.bz2' for legacy binary)",
        defaults={"base_url": DWD, "suffix": ".hdf5"},
    ),
    "dwd-radolan-rw": Preset(
        url="{base_url}/radolan/rw/raa01-rw_10000-%y%m%d%H%M-dwd---bin{suffix}",
        latest_url="{base_url}/radolan/rw/raa01-rw_10000-latest-dwd---bin{suffix}",
        cadence="1h",
        description="DWD RADOLAN RW hourly adjusted accumulation (issued hh:50)",
        defaults={"base_url": DWD, "suffix": ".hdf5"},
    ),
    # EUMETNET OPERA composites by object key (a bucket or mirror given as base_url).
    "opera-nimbus": Preset(
        url="{base_url}/{prefix}T_PAAH22_C_EUOC_%Y%m%d%H%M%S.hdf",
        cadence="15min",
        description="OPERA NIMBUS rain-rate composite (ODIM HDF5, mm/h), 15 min",
        defaults={"prefix": "%Y/%m/%d/"},
    ),
    "opera-cirrus": Preset(
        url="{base_url}/{prefix}T_PABV21_C_EUOC_%Y%m%d%H%M%S.hdf",
        cadence="5min",
        description="OPERA CIRRUS maximum-reflectivity composite (ODIM HDF5, DBZH), 5 min",
        defaults={"prefix": "%Y/%m/%d/"},
    ),
    "opera-odyssey": Preset(
        url="{base_url}/{prefix}T_PAAH21_C_EUOC_%Y%m%d%H%M%S.hdf",
        cadence="15min",
        description="OPERA ODYSSEY rain-rate composite (ODIM HDF5, mm/h), 15 min",
        defaults={"prefix": "%Y/%m/%d/"},
    ),
    # NOAA MRMS (CONUS), GRIB2 gzipped, 2 min.
    "mrms-preciprate": Preset(
        url="{base_url}/MRMS_PrecipRate_00.00_%Y%m%d-%H%M%S.grib2.gz",
        latest_url="{base_url}/MRMS_PrecipRate.latest.grib2.gz",
        cadence="2min",
        description="NOAA MRMS PrecipRate (GRIB2, mm/h) from the NCEP server",
        defaults={"base_url": "https://mrms.ncep.noaa.gov/data/2D/PrecipRate"},
    ),
    "mrms-preciprate-aws": Preset(
        url="{base_url}/CONUS/PrecipRate_00.00/%Y%m%d/MRMS_PrecipRate_00.00_%Y%m%d-%H%M%S.grib2.gz",
        cadence="2min",
        description="NOAA MRMS PrecipRate from the NOAA open-data bucket on AWS",
        defaults={"base_url": "https://noaa-mrms-pds.s3.amazonaws.com"},
    ),
}


def get_preset(name: str) -> Preset:
    """The preset ``name``; the error lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown http preset {name!r}; valid: {', '.join(sorted(PRESETS))}") from None
