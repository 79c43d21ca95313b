"""Expected properties of every radar data set in ../shared/data/radar (see DATA.md).

Expected timestamps are derived from the agencies' file-naming conventions, which the readers
themselves never use (except the Cagliari PNG, which has no metadata): an independent check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: same rule as tests/conftest.py (NOWCAST_SHARED_DATA or ../shared/data); tests also request
#: the ``shared_data`` fixture, which skips them with a reason when the data is absent
RADAR_DATA = Path(os.environ.get("NOWCAST_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data")) / "radar"


def _t(fmt: str, pattern: str) -> Callable[[str], pd.Timestamp]:
    rx = re.compile(pattern)

    def parse(name: str) -> pd.Timestamp:
        m = rx.search(name)
        assert m, f"test table: {name} does not match {pattern}"
        return pd.Timestamp(pd.to_datetime("".join(m.groups()), format=fmt))

    return parse


def _doy(pattern: str) -> Callable[[str], pd.Timestamp]:
    rx = re.compile(pattern)

    def parse(name: str) -> pd.Timestamp:
        yy, doy, hh, mm = (int(g) for g in rx.search(name).groups())  # type: ignore[union-attr]
        return pd.Timestamp(2000 + yy, 1, 1) + pd.Timedelta(days=doy - 1, hours=hh, minutes=mm)

    return parse


@dataclass(frozen=True)
class Case:
    folder: str  # glob relative to RADAR_DATA
    reader: str
    n_files: int
    shape: tuple[int, int]
    proj: dict[str, object]  # expected PROJ parameters (subset of CRS.to_dict()) or {"epsg": N}
    spacing: tuple[float, float]  # (dx, dy) in CRS units, dy < 0 (north-up)
    nan: tuple[float, float]  # plausible NaN (no coverage) fraction range
    time_of: Callable[[str], pd.Timestamp]
    max_rate: float = 500.0
    exclude: tuple[str, ...] = field(default=())

    def files(self) -> list[Path]:
        return sorted(p for p in RADAR_DATA.glob(self.folder) if p.is_file() and not any(e in p.name for e in self.exclude))


LAEA = {"proj": "laea", "lat_0": 55, "lon_0": 10}
CASES: dict[str, Case] = {
    "rmi": Case("rmi/*/*.hdf", "odim_hdf5", 39, (700, 700), {"proj": "lcc", "lon_0": 4.35921583333333},
                (1000, -1000), (0.30, 0.36), _t("%Y%m%d%H%M%S", r"^(\d{14})")),
    "opera-odyssey": Case("opera-odyssey/*/*.hdf", "odim_hdf5", 24, (2200, 1900), LAEA, (2000, -2000), (0.45, 0.55),
                          _t("%Y%m%d%H%M%S", r"EUOC_(\d{14})")),
    "opera-cirrus": Case("opera-cirrus/*/*.hdf", "odim_hdf5", 13, (4400, 3800), LAEA, (1000, -1000), (0.45, 0.55),
                         _t("%Y%m%d%H%M%S", r"EUOC_(\d{14})")),
    "opera-nimbus": Case("opera-nimbus/*/*.hdf", "odim_hdf5", 5, (2200, 1900), LAEA, (2000, -2000), (0.45, 0.55),
                         _t("%Y%m%d%H%M%S", r"EUOC_(\d{14})")),
    "opera-odim-sample": Case("opera-odim-sample/*.hdf", "odim_hdf5", 1, (2200, 1900), LAEA, (2000, -2000), (0.45, 0.55),
                              lambda n: pd.Timestamp("2023-06-16 04:15")),
    "dwd-odim": Case("dwd-odim/*/*.hdf5", "odim_hdf5", 1, (1200, 1100), {"proj": "stere", "lat_ts": 60, "lon_0": 10},
                     (1000, -1000), (0.40, 0.47), lambda n: pd.Timestamp("2025-09-22 05:40")),
    "perser-xband": Case("perser-xband/*/*.h5", "perser_hdf5", 25, (960, 960), {"proj": "aeqd", "lat_0": 39.2715},
                         (250, -250), (0.20, 0.23), _doy(r"CZW(\d{2})(\d{3})(\d{2})(\d{2})")),
    "knmi": Case("knmi/*/*.h5", "knmi_hdf5", 92, (765, 700), {"proj": "stere", "lat_0": 90, "lat_ts": 60, "lon_0": 0},
                 (1000, -1000), (0.72, 0.77), _t("%Y%m%d%H%M", r"5min_(\d{12})")),
    "mch": Case("mch/*/*.gif", "mch_gif", 80, (640, 710), {"proj": "somerc", "lon_0": 7.43958333333333},
                (1000, -1000), (0.25, 0.40), _doy(r"AQC(\d{2})(\d{3})(\d{2})(\d{2})"), max_rate=9.63 * 12 + 0.1),
    "fmi": Case("fmi/*/*.pgm.gz", "fmi_pgm", 40, (1226, 760), {"proj": "stere", "lon_0": 25, "lat_ts": 60},
                (999.674053, -999.62859), (0.20, 0.30), _t("%Y%m%d%H%M", r"^(\d{12})_")),
    "fmi-geotiff": Case("fmi-geotiff/*/*.tif", "fmi_geotiff", 1, (7316, 4963), {"epsg": 3067},
                        (250.00401887360616, -250.0139839309012), (0.60, 0.75), _t("%Y%m%d%H%M", r"^(\d{12})_")),
    "bom": Case("bom/*/*.nc", "bom_netcdf", 144, (512, 512), {"proj": "aea", "lon_0": 153.24, "lat_1": -26.2},
                (500, -500), (0.0, 0.01), _t("%Y%m%d%H%M%S", r"_(\d{8})_(\d{6})\.")),
    "mrms": Case("mrms/*/*.grib2", "mrms_grib2", 8, (3500, 7000), {"epsg": 4326}, (0.01, -0.01), (0.30, 0.40),
                 _t("%Y%m%d%H%M%S", r"_(\d{8})-(\d{6})\.")),
    "radolan-2014": Case("radolan/20140810/raa01-r*", "radolan", 3, (900, 900), {"proj": "stere", "lat_ts": 60, "lon_0": 10, "R": 6370040},
                         (1000, -1000), (0.15, 0.30), _t("%y%m%d%H%M", r"-(\d{10})-")),
    "radolan-wx": Case("radolan/20140810/raa01-wx*", "radolan", 1, (1100, 900), {"proj": "stere", "lat_ts": 60, "lon_0": 10, "R": 6370040},
                       (1000, -1000), (0.25, 0.40), _t("%y%m%d%H%M", r"-(\d{10})-")),
    "radolan-re": Case("radolan/20221018/RE*", "radolan", 3, (900, 900), {"proj": "stere", "lat_ts": 60, "lon_0": 10},
                       (1000, -1000), (0.70, 0.80),
                       lambda n: pd.Timestamp("2022-10-18 07:00") + pd.Timedelta(minutes=int(n[13:16]))),
    "radolan-rv": Case("radolan/20221018/*RV*.tar.bz2", "radolan_tar", 1, (1200, 1100), {"proj": "stere", "lat_ts": 60, "lon_0": 10},
                       (1000, -1000), (0.40, 0.50), lambda n: pd.Timestamp("2022-10-18 07:00")),
    "unica-xband": Case("unica-xband/*/*.png", "unica_png", 471, (1024, 1024), {"proj": "tmerc", "lon_0": 9},
                        (60, -60), (0.20, 0.23), _t("%Y%m%d%H%M", r"(\d{8})_(\d{4})\.png")),
}


def sample_files(case: Case, k: int = 2) -> list[Path]:
    """First and last file of a set (fast default tests)."""
    files = case.files()
    return files if len(files) <= k else [files[0], files[-1]]
