"""The evaluation ledger: an append-only JSON-lines record of every step of a run.

Records (one JSON object per line, key ``event``):

- ``plan``: run id, plan hash, the validated plan, code version, package versions, device,
  host, the blocks and the split definitions;
- ``split``: run id, plan hash, split index/repetition/fold, seed, data fingerprint (SHA-256
  of the exact bytes of every frame read, in order), timings, checkpoints, model versions and
  the per-split streaming states of every method (exact: integers and float64 sums);
- ``summary``: run id, plan hash, wall time, outputs.

The file is only ever opened for appending; a new run appends a new ``plan`` record.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nowcast.provenance import code_version  # noqa: F401  (re-exported: the ledger records it)

PACKAGES = (
    "nowcast",
    "numpy",
    "scipy",
    "pandas",
    "xarray",
    "zarr",
    "pysteps",
    "torch",
    "dask",
    "distributed",
    "opencv-python-headless",
    "pydantic",
    "netCDF4",
)


class LedgerError(ValueError):
    """A ledger that cannot be read or lacks the record asked for."""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that can change the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def device_info(device: str) -> dict[str, Any]:
    """The compute device of the run: requested torch device, CPU, threads."""
    info: dict[str, Any] = {
        "requested": device,
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # torch missing or broken: the classical methods still run
        info["cuda"] = None
    return info


class Ledger:
    """Append-only JSON-lines file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (a JSON object on one line), flushed and fsynced."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"recorded_at": now_iso(), **record}, sort_keys=True, allow_nan=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.path.is_file():
            raise LedgerError(f"{self.path}: ledger not found")
        with self.path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LedgerError(f"{self.path}:{n}: not a JSON record: {exc}") from exc

    def last_run(self) -> tuple[dict[str, Any], dict[int, dict[str, Any]], dict[str, Any] | None]:
        """The latest ``plan`` record, its ``split`` records by index, and its ``summary`` (or None)."""
        plan: dict[str, Any] | None = None
        splits: dict[int, dict[str, Any]] = {}
        summary: dict[str, Any] | None = None
        for rec in self.records():
            if rec.get("event") == "plan":
                plan, splits, summary = rec, {}, None
            elif plan is not None and rec.get("run_id") == plan["run_id"]:
                if rec.get("event") == "split":
                    splits[int(rec["split"])] = rec
                elif rec.get("event") == "summary":
                    summary = rec
        if plan is None:
            raise LedgerError(f"{self.path}: no 'plan' record; is this an evaluation ledger?")
        return plan, splits, summary
