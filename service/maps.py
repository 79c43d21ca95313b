"""Whole-grid map images (PNG with legend and time stamp) and netCDF exports of one frame."""

from __future__ import annotations

import os
import tempfile
import threading

import numpy as np
import pandas as pd

from nowcast import basemap, dims, plotting
from service.data import DataAccess, FrameRef, iso

_LAYER_TITLES = {"rain": "Rain rate", "lightning": "Lightning"}
#: the HDF5 library under netCDF4 is process-wide state, so is the lock serialising its use here
_HDF5_LOCK = threading.Lock()


def map_title(ref: FrameRef, layer: str) -> tuple[str, str]:
    """(title, subtitle) of a map: what and when (valid time, UTC)."""
    what = _LAYER_TITLES[layer]
    if ref.is_forecast:
        what += " probability" if layer == "lightning" else ""
        title = f"{what} forecast valid {iso(ref.valid_time)}"
        sub = f"init {iso(ref.time)} +{ref.lead_minutes} min" + (f", {ref.model}" if ref.model else "")
    else:
        what += " observed" if layer == "lightning" else ""
        title = f"{what} observed {iso(ref.time)}" if layer == "rain" else f"{what} {iso(ref.time)}"
        sub = "observation"
    return title, sub


def render_png(access: DataAccess, ref: FrameRef, layer: str, version: str | None = None) -> bytes:
    """A PNG map of the whole grid for ``ref``/``layer`` (matplotlib, Agg); ``version``: its content version."""
    field = access.field(ref, layer, version)
    grid = access.grid()
    xmin, ymin, xmax, ymax = grid.bounds()
    v = field if grid.dy < 0 else field[::-1]
    if grid.dx < 0:
        v = v[:, ::-1]
    unit = grid.crs.axis_info[0].unit_name if grid.crs.axis_info else "metre"
    scale = 1.0
    if unit in ("metre", "meter", "m"):
        unit, scale = "km", 1000.0
    title, sub = map_title(ref, layer)
    extent = (xmin / scale, xmax / scale, ymin / scale, ymax / scale)
    overlays = {name: [xy / scale for xy in lines] for name, lines in basemap.grid_overlays(grid).items()}
    fig = plotting.map_figure(v, extent, layer, title, subtitle=sub, x_label=f"x ({unit})", y_label=f"y ({unit})", overlays=overlays)
    return plotting.figure_png(fig)


def to_netcdf_bytes(access: DataAccess, ref: FrameRef) -> bytes:
    """A CF netCDF4 file of the frame: observation (rain_rate, lightning) or forecast lead
    (rain_rate, lightning_probability), with the CRS as grid mapping."""
    if ref.is_forecast:
        fc = access.forecasts()
        assert fc is not None
        ds = fc.open_run(ref.time).sel({dims.LEAD_TIME: pd.Timedelta(minutes=ref.lead_minutes or 0)}).load()
        ds = ds.expand_dims({dims.LEAD_TIME: [np.timedelta64(ref.lead_minutes, "m").astype("timedelta64[ns]")]})
        ds = ds.assign_coords({dims.INIT_TIME: ref.time.to_datetime64(), "valid_time": ref.valid_time.to_datetime64()})
    else:
        ds = access.raw_observation(ref.time).drop_vars(["present", "lightning_present"], errors="ignore").load()
    ds.attrs.update({"title": f"nowcast {'forecast' if ref.is_forecast else 'observation'} {ref.key}", "Conventions": "CF-1.8"})
    for v in ds.data_vars:
        ds[v].encoding = {}
    for c in ds.coords:
        ds[c].encoding = {}
    fd, path = tempfile.mkstemp(suffix=".nc")
    os.close(fd)
    try:
        with _HDF5_LOCK:  # netCDF4/HDF5 is not thread-safe: two exports at once crashed the process
            ds.to_netcdf(path, engine="netcdf4")
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def render_tile(access: DataAccess, ref: FrameRef, layer: str, z: int, x: int, y: int, version: str | None = None) -> bytes:
    """One 256 x 256 palette PNG tile (Web Mercator), transparent where dry or not covered.

    ``version``: the content version of ``ref`` (:meth:`service.data.Snapshot.content_version`;
    default: in the current snapshot); see :func:`service.tiles.tile_png`.
    """
    from service.tiles import tile_png

    sampler = access.sampler()
    if not sampler.intersects(z, x, y):
        return empty_tile()
    return tile_png(access.levels(ref, layer, version), sampler, layer, z, x, y)


_EMPTY: dict[str, bytes] = {}


def empty_tile() -> bytes:
    if "t" not in _EMPTY:
        _EMPTY["t"] = plotting.png_bytes(np.zeros((256, 256, 4), dtype=np.uint8), optimize=True)
    return _EMPTY["t"]
