"""Validation and decoding of fetched content into a frame on the store grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ingest.settings import IngestSettings
from nowcast import dims
from nowcast.grid import Grid
from nowcast.sources.base import Fetched


class BadFile(ValueError):
    """Fetched content that fails validation or decoding (it is quarantined)."""


class OffCadence(ValueError):
    """A frame whose time is not on the store cadence (e.g. 2-min MRMS into a 5-min store): skipped."""


def decode_radar(fetched: Fetched, grid: Grid, cadence: pd.Timedelta, settings: IngestSettings, wall: pd.Timestamp) -> tuple[xr.DataArray, xr.DataArray | None]:
    """Validate and decode fetched content into a rain frame ``(y, x)`` float32 mm/h on ``grid``
    (with scalar ``time``) and optional lightning counts; raises BadFile or OffCadence."""
    lightning = None
    if fetched.dataset is not None:
        ds = fetched.dataset
        if dims.RAIN_RATE not in ds:
            raise BadFile(f"dataset has no {dims.RAIN_RATE!r} variable")
        frame = ds[dims.RAIN_RATE]
        if dims.LIGHTNING in ds:
            lightning = ds[dims.LIGHTNING]
    else:
        from nowcast.io import ReaderError, read_radar

        path = fetched.path
        if path is None or not path.is_file():
            raise BadFile("no content")
        size = path.stat().st_size
        if size == 0:
            raise BadFile("empty file")
        if size > settings.max_bytes:
            raise BadFile(f"file of {size} bytes exceeds max_bytes={settings.max_bytes}")
        try:
            frame = read_radar(path, **settings.reader_options)
        except ReaderError as exc:
            raise BadFile(exc.reason) from exc
        except MemoryError as exc:
            raise BadFile("out of memory while decoding") from exc
    if dims.TIME in frame.dims:
        if frame.sizes[dims.TIME] != 1:
            raise BadFile(f"expected one frame, got {frame.sizes[dims.TIME]} times")
        frame = frame.isel({dims.TIME: 0})
    if fetched.time is not None:
        frame = frame.assign_coords({dims.TIME: np.datetime64(fetched.time.as_unit("ns").to_datetime64())})
        if lightning is not None:
            lightning = lightning.assign_coords({dims.TIME: frame[dims.TIME]})
    if dims.TIME not in frame.coords:
        raise BadFile("frame has no valid time")
    t = dims.to_utc_timestamp(frame[dims.TIME].values)
    if t > wall + pd.Timedelta("1h"):
        raise BadFile(f"valid time {t} is in the future")
    if t.floor(cadence) != t:
        raise OffCadence(f"valid time {t} is not on the store cadence {cadence}")
    try:
        dims.validate_frames(frame)
    except dims.DataModelError as exc:
        raise BadFile(f"not a valid frame: {exc}") from exc
    values = np.asarray(frame.values)
    if not np.isfinite(values).any():
        raise BadFile("frame holds no valid data (all NaN)")
    if not Grid.of(frame).same_as(grid):
        from nowcast.regrid import regrid

        try:
            frame = regrid(frame, grid, method=settings.regrid_method)  # type: ignore[arg-type]
        except Exception as exc:
            raise BadFile(f"cannot regrid onto the store grid: {type(exc).__name__}: {exc}") from exc
        if lightning is not None:
            lightning = regrid(lightning, grid, method="nearest")
        if not np.isfinite(np.asarray(frame.values)).any():
            raise BadFile("frame does not overlap the store grid")
    return frame, lightning
