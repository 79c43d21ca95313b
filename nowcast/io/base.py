"""Reader protocol, registry, error type and the shared steps every radar reader uses.

A reader turns one archived radar file into a frame ``DataArray(time=1, y, x)``: float32
rain rate in mm/h (:data:`nowcast.dims.RAIN_RATE_UNITS`), NaN = no radar coverage / nodata,
0 = observed dry (undetect), 1-D cell-centre ``x``/``y`` in CRS units, north-up (``y``
descending), CRS attached with :func:`nowcast.dims.attach_crs`, time = valid (end) time in UTC.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from nowcast import dims
from nowcast.registry import Registry

log = logging.getLogger(__name__)

#: Rain rates above this (mm/h) are not rain (clutter, hot pixels, outliers): set to NaN.
MAX_RAIN_RATE = 500.0

#: How many leading (decompressed) bytes sniffing looks at.
HEAD_BYTES = 8192

GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"


class ReaderError(ValueError):
    """A radar file that cannot be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read radar file {self.path}: {reason}")


@dataclass
class Source:
    """One input file, transparently decompressed (gzip / bzip2 detected by magic bytes).

    ``head`` holds the first :data:`HEAD_BYTES` bytes of the (decompressed) content.
    """

    path: Path
    compression: str | None = None
    head: bytes = b""
    _data: bytes | None = field(default=None, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def memo(self, key: str, build: Any) -> Any:
        """``build()`` computed once per source (sniffers share expensive look-ups)."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    @classmethod
    def open_path(cls, path: str | Path) -> Source:
        p = Path(path)
        if not p.is_file():
            raise ReaderError(p, "no such file" if not p.exists() else "not a regular file")
        with p.open("rb") as fh:
            raw_head = fh.read(HEAD_BYTES)
        if not raw_head:
            raise ReaderError(p, "file is empty")
        src = cls(path=p)
        if raw_head.startswith(GZIP_MAGIC):
            src.compression = "gzip"
        elif raw_head.startswith(BZIP2_MAGIC):
            src.compression = "bz2"
        if src.compression is None:
            src.head = raw_head
        else:
            src.head = src._stream_head()
            if not src.head:
                raise ReaderError(p, f"{src.compression} stream decompresses to nothing")
        return src

    def _stream_head(self) -> bytes:
        """First HEAD_BYTES of the decompressed stream without decompressing it all."""
        opener = gzip.open if self.compression == "gzip" else bz2.open
        try:
            with opener(self.path, "rb") as fh:
                return fh.read(HEAD_BYTES)
        except Exception as exc:  # zlib.error, EOFError, OSError, ...
            raise ReaderError(self.path, f"corrupt or truncated {self.compression} stream ({exc})") from exc

    def data(self) -> bytes:
        """The whole (decompressed) content; cached."""
        if self._data is None:
            raw = self.path.read_bytes()
            try:
                if self.compression == "gzip":
                    self._data = gzip.decompress(raw)
                elif self.compression == "bz2":
                    self._data = bz2.decompress(raw)
                else:
                    self._data = raw
            except Exception as exc:  # zlib.error, EOFError, OSError, ...
                raise ReaderError(self.path, f"corrupt or truncated {self.compression} stream ({exc})") from exc
        return self._data

    def open(self) -> IO[bytes]:
        """A binary file object on the decompressed content (the file itself when uncompressed)."""
        if self.compression is None:
            return self.path.open("rb")
        return io.BytesIO(self.data())

    def h5_target(self) -> Any:
        """What ``h5py.File`` should open: the path, or an in-memory buffer when compressed."""
        return str(self.path) if self.compression is None else io.BytesIO(self.data())


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_hdf5(head: bytes) -> bool:
    """HDF5 signature at offset 0 or at a power-of-two user-block offset present in ``head``."""
    return any(head[o : o + 8] == HDF5_MAGIC for o in (0, 512, 1024, 2048, 4096))


#: HDF5 groups whose attributes the sniffers look at
_H5_GROUPS = ("what", "where", "dataset1/what", "dataset1/where", "geographic", "image1", "overview")


def h5_info(src: Source) -> dict[str, Any] | None:
    """Root attributes, top-level names and a few groups' attributes of an HDF5 source, read once
    per source and shared by all sniffers; None when ``src`` is not a readable HDF5 file."""

    def build() -> dict[str, Any] | None:
        if not is_hdf5(src.head):
            return None
        try:
            import h5py

            with h5py.File(src.h5_target(), "r") as f:
                info: dict[str, Any] = {"attrs": _safe_attrs(f), "keys": list(f.keys()), "groups": {}}
                for g in _H5_GROUPS:
                    if g in f and isinstance(f[g], h5py.Group):
                        info["groups"][g] = _safe_attrs(f[g])
                info["dataset_projdef"] = any(
                    f"{k}/where" in f and "projdef" in f[f"{k}/where"].attrs for k in info["keys"] if k.startswith("dataset")
                )
                info["dimension_scales"] = any(
                    "DIMENSION_LIST" in obj.attrs or obj.attrs.get("CLASS", b"") == b"DIMENSION_SCALE"
                    for obj in f.values()
                    if isinstance(obj, h5py.Dataset)
                )
                return info
        except Exception:
            return None

    return src.memo("h5_info", build)


def _safe_attrs(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in obj.attrs:
        try:
            out[k] = obj.attrs[k]
        except Exception:  # exotic attribute types: skip, sniffers only need a few
            continue
    return out


@runtime_checkable
class RadarReader(Protocol):
    """One radar file format: content sniffing plus reading into a frame."""

    name: str
    #: short human description (format, agency)
    description: str

    def accepts(self, src: Source) -> bool:
        """True when ``src``'s *content* (never its name) is this format; must not raise."""
        ...

    def read(self, src: Source, **options: Any) -> xr.DataArray:
        """Read ``src`` into ``DataArray(time=1, y, x)`` (see module docstring)."""
        ...


#: name -> RadarReader instance. Third parties register through entry points ``nowcast.readers``
#: pointing at an instance or at a class whose no-argument constructor builds one.
READERS: Registry[RadarReader] = Registry("readers")


def as_reader(obj: Any) -> RadarReader:
    """A registry entry as a reader instance (entry points may name the class)."""
    return obj() if isinstance(obj, type) else obj


def dbz_to_rate(dbz: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    """Reflectivity (dBZ) -> float32 rain rate (mm/h) with :func:`nowcast.transforms.dbz_to_rainrate`.

    Uses ``options['zr']`` (default Marshall-Palmer) and ``options['dry_dbz']`` (default
    :data:`nowcast.transforms.DEFAULT_DRY_DBZ`; below it -> 0 mm/h). Non-finite input -> NaN.
    Only the wet cells are converted (a few percent of a composite), which keeps a
    4400x3800 frame well under a second.
    """
    from nowcast import transforms

    zr = options.get("zr", dims.MARSHALL_PALMER)
    dry = options.get("dry_dbz", transforms.DEFAULT_DRY_DBZ)
    dbz = np.asarray(dbz, dtype=dims.FLOAT)
    out = np.full(dbz.shape, np.nan, dtype=dims.FLOAT)
    finite = np.isfinite(dbz)
    if dry is None:
        wet = finite
    else:
        wet = finite & (dbz >= dry)
        out[finite & ~wet] = 0.0
    out[wet] = transforms.dbz_to_rainrate(dbz[wet], zr)
    return out


def edges_to_centres(start_edge: float, step: float, n: int) -> np.ndarray:
    """Cell centres of ``n`` cells starting at the outer edge ``start_edge`` with signed ``step``."""
    return start_edge + step * (np.arange(n, dtype=np.float64) + 0.5)


def finish_frame(
    rate: np.ndarray,
    *,
    x: np.ndarray,
    y: np.ndarray,
    crs: object,
    time: object,
    src: Source,
    source_format: str,
    quantity: str,
    product: str,
    extra_attrs: dict[str, Any] | None = None,
    max_rate: float = MAX_RAIN_RATE,
) -> xr.DataArray:
    """Common last step of every reader: sanitize and wrap a (y, x) rain-rate array (mm/h).

    Makes the array north-up (flips rows when ``y`` ascends), sets negative rates to 0 and rates
    above ``max_rate`` to NaN (counted in attr ``outliers_masked``), returns float32 frames.
    ``rate`` may be modified in place. Raises ValueError on a shape mismatch or on coordinates
    that are not finite and strictly monotonic (a corrupt georeference).
    """
    values = np.asarray(rate, dtype=dims.FLOAT)
    if values.ndim != 2 or values.shape != (len(y), len(x)):
        raise ValueError(f"data shape {values.shape} does not match the grid ({len(y)}, {len(x)})")
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    for name, c in (("x", x), ("y", y)):
        d = np.diff(c)
        if not np.isfinite(c).all() or not (np.all(d > 0) or np.all(d < 0)):
            raise ValueError(f"{name} coordinates are not finite and strictly monotonic (corrupt georeference?)")
    if y.size > 1 and y[1] > y[0]:
        values = values[::-1]
        y = y[::-1]
    values = np.ascontiguousarray(values)  # copies only a flipped view; else works in place
    if not values.flags.writeable:
        values = values.copy()
    with np.errstate(invalid="ignore"):
        np.maximum(values, 0, out=values, where=np.isfinite(values))
        outliers = values > max_rate
    n_out = int(np.count_nonzero(outliers))
    if n_out:
        log.info("%s: %d cells above %.0f mm/h set to NaN (outliers)", src.path, n_out, max_rate)
        values[outliers] = np.nan
    attrs: dict[str, Any] = {
        "source_format": source_format,
        "source_file": str(src.path),
        "quantity_as_stored": quantity,
        "product": product,
        "outliers_masked": n_out,
        "long_name": "rain rate",
    }
    attrs.update(extra_attrs or {})
    with warnings.catch_warnings():  # pyproj's CF export warns about somerc/omerc parameters
        warnings.filterwarnings("ignore", message=".*lost in conversion to CF", category=UserWarning)
        return dims.make_frames(values, [time], x, y, crs, attrs=attrs)


def decode_str(v: Any) -> str:
    """HDF5/netCDF attribute (bytes, numpy bytes, 1-element array) -> str."""
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size else ""
    if isinstance(v, bytes | np.bytes_):
        return bytes(v).decode("latin-1").strip("\x00 ").strip()
    return str(v).strip()


def scalar(v: Any) -> float:
    """HDF5 attribute (scalar or 1-element array) -> float."""
    return float(np.asarray(v).reshape(-1)[0])
