"""Regridding frames between grids in any CRS, cropping and block downsampling.

All functions take a ``DataArray(..., y, x)`` (e.g. ``(time, y, x)``) carrying its CRS
(:func:`nowcast.dims.attach_crs`) and return float32 arrays with the same leading dims.
NaN (no coverage) is never averaged as zero:

* ``nearest``: each target cell takes the source cell containing its centre (found by
  transforming target centres into the source CRS); outside the source grid -> NaN.
* ``area_mean``: each target cell takes the mean of the finite source cells whose centres fall
  into it; it is NaN when *more than half* of those contributing cells are NaN (so a coverage
  edge neither grows nor shrinks by more than half a target cell). Target cells that no source
  centre falls into (target finer than source) use the nearest value.

The index mapping between a (source grid, target grid) pair is cached in a small bounded LRU
cache (:data:`CACHE_SIZE` pairs); both grids are part of the key, so a changed grid never reuses
a stale mapping.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr

from nowcast import dims
from nowcast.grid import Grid

Method = Literal["nearest", "area_mean"]
CACHE_SIZE = 8


@dataclass(frozen=True)
class _Nearest:
    flat: np.ndarray  # (ny_t * nx_t,) int64 flat source index, -1 = outside


@dataclass(frozen=True)
class _AreaMean:
    rows: slice  # source window that can contribute
    cols: slice
    target: np.ndarray  # flat target index per source cell of the window (int64); n_target = outside
    total: np.ndarray  # number of contributing source cells per target cell
    nearest: _Nearest  # fallback for target cells without contributing cells


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> object | None:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return None

    def put(self, key: tuple, value: object) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)


_CACHE = _LRU(CACHE_SIZE)


def clear_cache() -> None:
    """Forget all cached index mappings."""
    _CACHE.clear()


def _grid_key(g: Grid) -> tuple:
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(g.x).tobytes())
    h.update(np.ascontiguousarray(g.y).tobytes())
    h.update(g.crs_wkt.encode())
    return (g.shape, h.hexdigest())


def _check_regular(g: Grid, what: str) -> None:
    for name, c in (("x", g.x), ("y", g.y)):
        if c.size > 2:
            d = np.diff(c)
            if not np.allclose(d, d[0], rtol=1e-6, atol=1e-9 * max(1.0, abs(float(d[0])))):
                raise ValueError(f"{what} grid is not regular along {name}; regridding needs a regular grid")


def _same_crs(a: Grid, b: Grid) -> bool:
    return a.crs_wkt == b.crs_wkt or a.crs == b.crs


def _transform(src_crs: object, dst_crs: object, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import Transformer

    tr = Transformer.from_crs(src_crs, dst_crs, always_xy=True)
    xx, yy = tr.transform(x, y)
    xx = np.asarray(xx, dtype=np.float64)
    yy = np.asarray(yy, dtype=np.float64)
    bad = ~(np.isfinite(xx) & np.isfinite(yy))
    if bad.any():
        xx[bad] = np.nan
        yy[bad] = np.nan
    return xx, yy


#: lattices with more points than this are transformed exactly on every LATTICE_STEP-th row and
#: column only and bilinearly interpolated in between (projection maps are smooth: the error is
#: a few metres at most for 8-cell steps of 1 km, far below a cell)
EXACT_POINTS = 1_000_000
LATTICE_STEP = 8


def _coarse_index(n: int, step: int) -> np.ndarray:
    idx = np.arange(0, n, step)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def _transform_lattice(src_crs: object, dst_crs: object, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transform the lattice ``xs`` x ``ys`` (1-D) -> 2-D arrays (len(ys), len(xs)) in ``dst_crs``."""
    if xs.size * ys.size <= EXACT_POINTS or xs.size < 3 * LATTICE_STEP or ys.size < 3 * LATTICE_STEP:
        xx, yy = np.meshgrid(xs, ys)
        tx, ty = _transform(src_crs, dst_crs, xx.reshape(-1), yy.reshape(-1))
        return tx.reshape(xx.shape), ty.reshape(xx.shape)
    ci, ri = _coarse_index(xs.size, LATTICE_STEP), _coarse_index(ys.size, LATTICE_STEP)
    cx, cy = np.meshgrid(xs[ci], ys[ri])
    tx, ty = _transform(src_crs, dst_crs, cx.reshape(-1), cy.reshape(-1))
    tx, ty = tx.reshape(cx.shape), ty.reshape(cx.shape)
    cols = np.arange(xs.size, dtype=np.float64)
    rows = np.arange(ys.size)
    # along x for every coarse row (np.interp handles the uneven last step)
    ax = np.stack([np.interp(cols, ci, r) for r in tx])
    ay = np.stack([np.interp(cols, ci, r) for r in ty])
    # along y: weights between the two bracketing coarse rows
    k = np.clip(np.searchsorted(ri, rows, side="right") - 1, 0, ri.size - 2)
    w = ((rows - ri[k]) / (ri[k + 1] - ri[k]))[:, None]
    out_x = ax[k] * (1 - w) + ax[k + 1] * w
    out_y = ay[k] * (1 - w) + ay[k + 1] * w
    return out_x, out_y


def _index_1d(coord: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the cell of regular ``coord`` containing each value; -1 when outside/NaN."""
    step = coord[1] - coord[0] if coord.size > 1 else 1.0
    idx = np.subtract(values, coord[0], dtype=np.float64)
    idx /= step
    idx += 0.5
    np.floor(idx, out=idx)
    with np.errstate(invalid="ignore"):
        ok = idx >= 0
        ok &= idx < coord.size
    idx[~ok] = -1
    return idx.astype(np.int64)


def _nearest_map(src: Grid, dst: Grid) -> _Nearest:
    if _same_crs(src, dst):
        cols = _index_1d(src.x, dst.x)
        rows = _index_1d(src.y, dst.y)
        flat = rows[:, None] * src.x.size + cols[None, :]
        flat[(rows[:, None] < 0) | (cols[None, :] < 0)] = -1
        return _Nearest(flat.reshape(-1))
    sx, sy = _transform_lattice(dst.crs, src.crs, dst.x, dst.y)
    sx, sy = sx.reshape(-1), sy.reshape(-1)
    cols = _index_1d(src.x, sx)
    rows = _index_1d(src.y, sy)
    flat = rows * src.x.size + cols
    flat[(rows < 0) | (cols < 0)] = -1
    return _Nearest(flat)


def _source_window(src: Grid, dst: Grid) -> tuple[slice, slice]:
    """Rows/cols of ``src`` that may fall into ``dst`` (densified outline of dst in src CRS)."""
    if _same_crs(src, dst):
        xmin, ymin, xmax, ymax = dst.bounds()
        bx, by = np.array([xmin, xmax]), np.array([ymin, ymax])
    else:
        xmin, ymin, xmax, ymax = dst.bounds()
        t = np.linspace(0.0, 1.0, 101)
        ox = np.concatenate([xmin + (xmax - xmin) * t, np.full_like(t, xmax), xmax - (xmax - xmin) * t, np.full_like(t, xmin)])
        oy = np.concatenate([np.full_like(t, ymin), ymin + (ymax - ymin) * t, np.full_like(t, ymax), ymax - (ymax - ymin) * t])
        bx, by = _transform(dst.crs, src.crs, ox, oy)
        if not np.isfinite(bx).all():  # outline not representable: use the whole source grid
            return slice(0, src.y.size), slice(0, src.x.size)
    pad_x, pad_y = 2 * abs(src.dx), 2 * abs(src.dy)
    cmask = (src.x >= np.nanmin(bx) - pad_x) & (src.x <= np.nanmax(bx) + pad_x)
    rmask = (src.y >= np.nanmin(by) - pad_y) & (src.y <= np.nanmax(by) + pad_y)
    if not cmask.any() or not rmask.any():
        return slice(0, 0), slice(0, 0)
    c, r = np.flatnonzero(cmask), np.flatnonzero(rmask)
    return slice(int(r[0]), int(r[-1]) + 1), slice(int(c[0]), int(c[-1]) + 1)


def _area_map(src: Grid, dst: Grid) -> _AreaMean:
    rows, cols = _source_window(src, dst)
    sx, sy = src.x[cols], src.y[rows]
    if _same_crs(src, dst):
        tc = _index_1d(dst.x, sx)
        tr = _index_1d(dst.y, sy)
        target = tr[:, None] * dst.x.size + tc[None, :]
        target[(tr[:, None] < 0) | (tc[None, :] < 0)] = -1
        target = target.reshape(-1)
    else:
        tx, ty = _transform_lattice(src.crs, dst.crs, sx, sy)
        tx, ty = tx.reshape(-1), ty.reshape(-1)
        tc, tr = _index_1d(dst.x, tx), _index_1d(dst.y, ty)
        target = tr * dst.x.size + tc
        target[(tr < 0) | (tc < 0)] = -1
    n_target = dst.x.size * dst.y.size
    target[target < 0] = n_target  # a dump bin for source cells outside the target grid
    total = np.bincount(target, minlength=n_target + 1)[:n_target]
    return _AreaMean(rows, cols, target, total, _nearest_map(src, dst))


def _mapping(src: Grid, dst: Grid, method: str) -> object:
    key = (_grid_key(src), _grid_key(dst), method)
    m = _CACHE.get(key)
    if m is None:
        _check_regular(src, "source")
        _check_regular(dst, "target")
        m = _nearest_map(src, dst) if method == "nearest" else _area_map(src, dst)
        _CACHE.put(key, m)
    return m


def _stack(da: xr.DataArray) -> tuple[np.ndarray, tuple[str, ...]]:
    if da.dims[-2:] != (dims.Y, dims.X):
        raise ValueError(f"expected dims (..., 'y', 'x'), got {da.dims}")
    lead = da.dims[:-2]
    values = np.asarray(da.values, dtype=dims.FLOAT)
    return values.reshape((-1,) + values.shape[-2:]), lead


def _wrap(values: np.ndarray, like: xr.DataArray, grid: Grid) -> xr.DataArray:
    lead = like.dims[:-2]
    shape = tuple(like.sizes[d] for d in lead) + grid.shape
    coords = {k: v for k, v in like.coords.items() if dims.X not in v.dims and dims.Y not in v.dims and k != dims.GRID_MAPPING}
    coords.update({dims.Y: grid.y, dims.X: grid.x})
    out = xr.DataArray(values.reshape(shape).astype(dims.FLOAT, copy=False), dims=like.dims, coords=coords,
                       name=like.name, attrs={k: v for k, v in like.attrs.items() if k != "grid_mapping"})
    for c in (dims.X, dims.Y):
        if c in like.coords:
            out[c].attrs.update(like[c].attrs)
    return dims.attach_crs(out, grid.crs)  # type: ignore[return-value]


def regrid(da: xr.DataArray, target: Grid, method: Method = "nearest") -> xr.DataArray:
    """``da`` (..., y, x) resampled onto ``target`` (float32, same leading dims, target CRS).

    See the module docstring for the ``nearest`` / ``area_mean`` rules and NaN handling.
    """
    if method not in ("nearest", "area_mean"):
        raise ValueError(f"unknown regrid method {method!r}; valid: 'area_mean', 'nearest'")
    src = Grid.of(da)
    stack, _ = _stack(da)
    n = stack.shape[0]
    flat_src = stack.reshape(n, -1)
    m = _mapping(src, target, method)
    if isinstance(m, _Nearest):
        return _wrap(_apply_nearest(flat_src, m), da, target)
    assert isinstance(m, _AreaMean)
    n_target = target.x.size * target.y.size
    out = np.empty((n, n_target), dtype=dims.FLOAT)
    nearest = _apply_nearest(flat_src, m.nearest)
    empty = m.total == 0
    for i in range(n):
        v = stack[i, m.rows, m.cols].reshape(-1)
        fin = np.isfinite(v)
        sums = np.bincount(m.target, weights=np.where(fin, v, np.float32(0)), minlength=n_target + 1)[:n_target]
        cnt = np.bincount(m.target, weights=fin, minlength=n_target + 1)[:n_target]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / cnt
        mean[2 * cnt < m.total] = np.nan  # more than half of the contributing cells are NaN
        mean[empty] = nearest[i][empty]
        out[i] = mean
    return _wrap(out, da, target)


def _apply_nearest(flat_src: np.ndarray, m: _Nearest) -> np.ndarray:
    inside = m.flat >= 0
    out = np.full((flat_src.shape[0], m.flat.size), np.nan, dtype=dims.FLOAT)
    out[:, inside] = flat_src[:, m.flat[inside]]
    return out


def crop(da: xr.DataArray, bbox: tuple[float, float, float, float]) -> xr.DataArray:
    """Cells of ``da`` whose centres lie in ``bbox = (xmin, ymin, xmax, ymax)`` (CRS units of ``da``)."""
    xmin, ymin, xmax, ymax = bbox
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"bbox must be (xmin, ymin, xmax, ymax) with min < max, got {bbox}")
    x, y = da[dims.X].values, da[dims.Y].values
    cols = np.flatnonzero((x >= xmin) & (x <= xmax))
    rows = np.flatnonzero((y >= ymin) & (y <= ymax))
    if cols.size == 0 or rows.size == 0:
        raise ValueError(f"bbox {bbox} does not overlap the grid (x {x.min()}..{x.max()}, y {y.min()}..{y.max()})")
    return da.isel({dims.Y: slice(int(rows[0]), int(rows[-1]) + 1), dims.X: slice(int(cols[0]), int(cols[-1]) + 1)})


def downsample(da: xr.DataArray, factor: int) -> xr.DataArray:
    """Block mean over ``factor x factor`` cells (float32); trailing rows/cols that do not fill
    a whole block are dropped. A block is NaN when more than half of its cells are NaN, else the
    mean of its finite cells. New coordinates are the block centres.
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    factor = int(factor)
    stack, _ = _stack(da)
    n, ny, nx = stack.shape
    by, bx = ny // factor, nx // factor
    if by == 0 or bx == 0:
        raise ValueError(f"factor {factor} larger than the grid {ny}x{nx}")
    blocks = stack[:, : by * factor, : bx * factor].reshape(n, by, factor, bx, factor)
    fin = np.isfinite(blocks)
    cnt = fin.sum(axis=(2, 4))
    sums = np.where(fin, blocks, 0).sum(axis=(2, 4), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (sums / cnt).astype(dims.FLOAT)
    mean[2 * cnt < factor * factor] = np.nan
    x = da[dims.X].values[: bx * factor].reshape(bx, factor).mean(axis=1)
    y = da[dims.Y].values[: by * factor].reshape(by, factor).mean(axis=1)
    grid = Grid(x=x, y=y, crs_wkt=dims.crs_of(da).to_wkt())
    return _wrap(mean, da, grid)
