"""Training windows from the observation store.

A window is identified by its *last input frame* ``t``: the encoder sees the ``n_inputs``
frames ending at ``t``, the targets are the ``n_leads`` frames after it. Windows are kept when
the frame at ``t`` exists and at least ``min_wet_fraction`` of its covered cells are wet.

The extrapolation guide (optical flow + advection, expensive) is computed once per window on
the full frame, before any crop, and cached on disk as ``.npy`` keyed on a hash of the
window's input frames and of the guide settings (so a changed store can never serve a stale
guide). Crops and augmentation are then applied identically to inputs, guide and targets.

Samples are deterministic functions of ``(seed, epoch, index)``, whichever worker or rank
loads them. The store is opened lazily in each process (DataLoader workers use ``spawn``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from nowcast import dims
from nowcast.models.convlstm import cached_guide, input_features
from nowcast.models.network import EncoderForecaster, ModelConfig
from nowcast.transforms import rainrate_to_scaled
from training.config import TrainOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """One selected window: its last input frame and, when guided, its cached guide file."""

    end: pd.Timestamp
    guide_file: str | None


def window_ends(times: pd.DatetimeIndex, stride: int) -> pd.DatetimeIndex:
    """Candidate window ends: every ``stride``-th of the sorted unique ``times`` (the positions
    the event DAP's start times use at the same stride, so their guides are shared)."""
    return pd.DatetimeIndex(sorted(set(times)))[::stride]


def window_history(store: Any, end: pd.Timestamp, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(rain mm/h, lightning counts), each (frames_needed, y, x) float32, of the window ending at ``end``."""
    ds = store.window(end, cfg.frames_needed)
    return ds[dims.RAIN_RATE].values.astype(dims.FLOAT), ds[dims.LIGHTNING].values.astype(dims.FLOAT)


def select_windows(
    store: Any,
    times: pd.DatetimeIndex,
    cfg: ModelConfig,
    opts: TrainOptions,
    cache_dir: Path,
) -> list[Window]:
    """Filter ``times`` (last input frames) by presence and wetness; compute/cache guides.

    ``store``: an :class:`nowcast.store.ObservationStore`. Returns windows sorted by time.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    stored = store.times()
    out: list[Window] = []
    for t in window_ends(times, opts.window_stride):
        if t not in stored:
            continue
        rain, light = window_history(store, t, cfg)
        last = rain[-1]
        cov = np.isfinite(last)
        if not cov.any():
            continue
        wet = np.count_nonzero(last[cov] >= opts.wet_threshold) / cov.sum()
        if wet < opts.min_wet_fraction:
            continue
        guide_file = None
        if cfg.advection != "none":
            guide_file = str(cached_guide(rain, light, cfg, cache_dir)[1])
        out.append(Window(end=t, guide_file=guide_file))
    log.info("selected %d of %d windows (min wet fraction %.3g)", len(out), len(times), opts.min_wet_fraction)
    return out


def windows_fingerprint(windows: list[Window]) -> str:
    """Hash of the window end times (identifies the training/validation sample)."""
    h = hashlib.sha256()
    for w in windows:
        h.update(w.end.isoformat().encode())
    return h.hexdigest()[:16]


class WindowDataset(Dataset):
    """Tensors for the network from selected windows.

    Each item is a dict: ``inputs`` (N, C, h, w), ``guide`` (K, G, h, w) (G = 0 unguided),
    ``target`` (K, h, w) scaled rain, ``target_rate`` (K, h, w) mm/h (0 where unknown),
    ``mask`` (K, h, w) bool observed rain, ``light`` (K, h, w) occurrence 0/1, ``light_mask``
    (K, h, w) bool, ``cell_size_m`` () the store's cell size in metres. With ``crop_size`` a random square crop (training) or a centre crop
    (``train=False``); without, the full frame zero-padded to the network's size multiple
    (padding is masked out).
    """

    def __init__(
        self,
        store_url: str,
        windows: list[Window],
        cfg: ModelConfig,
        crop_size: int | None,
        *,
        train: bool,
        augment: bool,
        seed: int,
        storage_options: dict[str, Any] | None = None,
        grid_shape: tuple[int, int] | None = None,
    ) -> None:
        self.store_url = store_url
        self.storage_options = storage_options
        self.windows = windows
        self.cfg = cfg
        self.train = train
        self.augment = augment and train
        self.seed = int(seed)
        self.epoch = 0
        self.multiple = EncoderForecaster.size_multiple(cfg)
        self.grid_shape = grid_shape
        if crop_size is not None:
            crop_size = max(self.multiple, (crop_size // self.multiple) * self.multiple)
        self.crop_size = crop_size
        self._store = None
        self._cell_size_m: float | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None  # reopened in the worker
        return state

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def store(self):  # noqa: ANN201
        if self._store is None:
            from nowcast.store import ObservationStore

            self._store = ObservationStore.open(self.store_url, mode="r", storage_options=self.storage_options)
        return self._store

    def _crop(self, rng: np.random.Generator, shape: tuple[int, int]) -> tuple[slice, slice]:
        ny, nx = shape
        c = self.crop_size
        if c is None or (c >= ny and c >= nx):
            return slice(None), slice(None)
        cy, cx = min(c, ny), min(c, nx)
        if self.train:
            r0 = int(rng.integers(0, ny - cy + 1))
            c0 = int(rng.integers(0, nx - cx + 1))
        else:
            r0, c0 = (ny - cy) // 2, (nx - cx) // 2
        return slice(r0, r0 + cy), slice(c0, c0 + cx)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        w = self.windows[index]
        rng = np.random.default_rng([self.seed, self.epoch if self.train else 0, index])
        shape = self.grid_shape or self.store.grid.shape
        rows, cols = self._crop(rng, shape)
        cadence = self.store.cadence
        ds = self.store.window(w.end + cfg.n_leads * cadence, cfg.n_inputs + cfg.n_leads, rows, cols)
        rain = ds[dims.RAIN_RATE].values.astype(dims.FLOAT)
        light = ds[dims.LIGHTNING].values.astype(dims.FLOAT)
        n = cfg.n_inputs
        x = input_features(rain[:n], light[:n], cfg)  # (N, C, h, w)
        tgt = rain[n:]
        mask = np.isfinite(tgt)
        trate = np.where(mask, tgt, 0.0).astype(dims.FLOAT)
        lt = light[n:]
        lmask = np.isfinite(lt)
        locc = (np.nan_to_num(lt) > 0).astype(dims.FLOAT)
        if w.guide_file is not None:
            g = np.asarray(np.load(w.guide_file, mmap_mode="r")[..., rows, cols], dtype=dims.FLOAT)
        else:
            g = np.zeros((cfg.n_leads, 0) + x.shape[-2:], dtype=dims.FLOAT)
        arrays = {
            "inputs": x,
            "guide": g,
            "target": rainrate_to_scaled(trate).astype(dims.FLOAT),
            "target_rate": trate,
            "mask": mask,
            "light": locc,
            "light_mask": lmask,
        }
        if self.crop_size is None or any(s % self.multiple for s in x.shape[-2:]):
            arrays = {k: _pad(v, self.multiple) for k, v in arrays.items()}
        if self.augment:
            k = int(rng.integers(0, 4))
            if x.shape[-1] != x.shape[-2]:
                k = 2 * (k % 2)  # non-square frames: keep the shape
            flip = bool(rng.integers(0, 2))
            arrays = {key: _augment(v, k, flip) for key, v in arrays.items()}
        out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        out["cell_size_m"] = torch.tensor(self.cell_size_m, dtype=torch.float32)
        return out

    @property
    def cell_size_m(self) -> float:
        """The store grid's cell size in metres (read once)."""
        if self._cell_size_m is None:
            self._cell_size_m = self.store.grid.cell_size_m
        return self._cell_size_m


def _pad(a: np.ndarray, multiple: int) -> np.ndarray:
    ny, nx = a.shape[-2:]
    py, px = (-ny) % multiple, (-nx) % multiple
    if not (py or px):
        return a
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, py), (0, px)])  # zeros / False = masked


def _augment(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """The same rotation/flip of the last two axes for every array of a sample."""
    if flip:
        a = a[..., ::-1]
    return np.rot90(a, k, axes=(-2, -1))


class MultiStoreDataset(Dataset):
    """Windows of several stores (events on different grids) as one dataset.

    ``parts``: one :class:`WindowDataset` per store. Item ``i`` is item ``i - offset[p]`` of
    part ``p`` (parts in order). Every item is zero-padded (padding masked out, like
    :class:`WindowDataset`'s own padding) to one common ``(h, w)``: the largest item shape over
    the parts, so crops of grids of any size batch together. With ``crop_size`` set on every
    part, that is the crop (or the whole frame of a grid smaller than the crop).
    """

    def __init__(self, parts: list[WindowDataset]) -> None:
        if not parts:
            raise ValueError("MultiStoreDataset needs at least one part")
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.multiple = parts[0].multiple
        shapes = [self._item_shape(p) for p in parts]
        self.shape = (max(s[0] for s in shapes), max(s[1] for s in shapes))
        if any(p.augment for p in parts) and self.shape[0] != self.shape[1]:
            raise ValueError(f"augmented multi-store items must be square; common shape {self.shape} (set crop_size)")

    @staticmethod
    def _item_shape(part: WindowDataset) -> tuple[int, int]:
        ny, nx = part.grid_shape or part.store.grid.shape
        c = part.crop_size
        if c is not None and not (c >= ny and c >= nx):
            ny, nx = min(c, ny), min(c, nx)
        m = part.multiple
        return (-(-ny // m) * m, -(-nx // m) * m)

    @property
    def windows(self) -> list[Window]:
        return [w for p in self.parts for w in p.windows]

    def set_epoch(self, epoch: int) -> None:
        for p in self.parts:
            p.set_epoch(epoch)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} windows")
        p = int(np.searchsorted(self.offsets, index, side="right") - 1)
        item = self.parts[p][index - int(self.offsets[p])]
        out = {}
        for k, v in item.items():
            if v.ndim < 2:  # per-item scalars (cell size)
                out[k] = v
                continue
            py, px = self.shape[0] - v.shape[-2], self.shape[1] - v.shape[-1]
            if py or px:
                v = torch.nn.functional.pad(v, (0, px, 0, py)) if v.dtype != torch.bool else torch.nn.functional.pad(v.to(torch.uint8), (0, px, 0, py)).bool()
            out[k] = v
        return out
