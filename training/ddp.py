"""Distributed data parallel helpers: initialisation from the torchrun environment.

``torchrun --nproc_per_node=N -m cli train ...`` (or ``nowcast train`` under torchrun)
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``; the process group
uses NCCL on GPUs and gloo on CPU. Without those variables everything runs in one process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from nowcast import dims

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from nowcast.grid import Grid
    from nowcast.store import ObservationStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: str) -> DistContext:
    """Join the process group described by the environment (if any) and pick the device.

    ``device``: "cpu" or "cuda" (already resolved); with CUDA each rank takes ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not dist.is_initialized():
        return DistContext(device=device)
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    owns = False
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        owns = True
        log.info("joined process group: rank %d of %d (%s)", rank, world, backend)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, device=device, owns_group=owns)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_flag(flag: bool, ctx: DistContext) -> bool:
    """Rank 0's boolean, on every rank."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=ctx.device if ctx.device.startswith("cuda") else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())


def all_reduce_mean(value: float, ctx: DistContext) -> float:
    """Mean of a float over ranks."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device if ctx.device.startswith("cuda") else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def cleanup(ctx: DistContext) -> None:
    """Leave the process group if this context created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _local_worker(rank: int, world_size: int, port: int, fit_kwargs: dict, threads: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(threads)
    from training.api import fit

    fit(**fit_kwargs)


def fit_local(world_size: int, threads_per_rank: int = 1, **fit_kwargs: object) -> None:
    """Run :func:`training.api.fit` on ``world_size`` local CPU processes (gloo), like
    ``torchrun --nproc_per_node`` would; the store is passed by URL (reopened per rank).

    ``fit_kwargs``: the keyword arguments of ``fit`` with ``store`` replaced by ``store_url``.
    """
    import torch.multiprocessing as mp

    url = fit_kwargs.pop("store_url")
    fit_kwargs["store"] = _StoreByUrl(str(url))
    mp.spawn(_local_worker, args=(world_size, _free_port(), fit_kwargs, threads_per_rank), nprocs=world_size, join=True)


class _StoreByUrl:
    """Picklable :class:`nowcast.store.ObservationStoreLike` that opens the observation store
    (read-only) on first use in the worker process; only its URL travels to the worker."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: ObservationStore | None = None

    def __getstate__(self) -> dict:
        return {"url": self.url, "_store": None}

    def _opened(self) -> ObservationStore:
        if self._store is None:
            from nowcast.store import ObservationStore

            self._store = ObservationStore.open(self.url, mode="r")
        return self._store

    @property
    def storage_options(self) -> dict[str, Any] | None:
        return self._opened().storage_options

    @property
    def grid(self) -> Grid:
        return self._opened().grid

    @property
    def cadence(self) -> pd.Timedelta:
        return self._opened().cadence

    @property
    def version(self) -> str:
        return self._opened().version

    def last_complete(self) -> pd.Timestamp | None:
        return self._opened().last_complete()

    def times(self, variable: str = dims.RAIN_RATE) -> pd.DatetimeIndex:
        return self._opened().times(variable)

    def has(self, time: object, variable: str = dims.RAIN_RATE) -> bool:
        return self._opened().has(time, variable)

    def window(self, end: object, n: int, rows: slice | None = None, cols: slice | None = None) -> xr.Dataset:
        return self._opened().window(end, n, rows, cols)

    def read_times(self, times: object, rows: slice | None = None, cols: slice | None = None) -> xr.Dataset:
        return self._opened().read_times(times, rows, cols)
