"""Provenance: which code and which data a number came from.

One :func:`code_version` (package version, git commit, dirty flag) and one content
:func:`data_fingerprint` (SHA-256 of the bytes of every stored rain frame, in time order), used
by checkpoints, model cards, the model registry and the DAP ledgers alike. A fingerprint
changes when any stored value changes, and only then (it does not depend on the store's write
counter or on where the store lives). It is exact but can be tied to the machine: the same files imported on an Intel
(AVX-512) and an AMD (AVX2) machine gave other content fingerprints for exactly the stores whose
readers convert reflectivity to rain rate (NumPy picks its ``power``/``exp`` kernels by the CPU's
SIMD level; README, Known limits). :func:`source_fingerprint` (SHA-256 of the
imported source files, their readers, import options and frame times) is the same on every
machine; records carry both.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from nowcast.store import ObservationStoreLike

REPO = Path(__file__).resolve().parents[1]
#: cells read at once by data_fingerprint (about 64 MB of float32)
_BATCH_CELLS = 1 << 24


@lru_cache(maxsize=1)
def _git() -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
        return commit or None, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        # a copy without git metadata (a container image, a batch machine) may name its commit
        return os.environ.get("NOWCAST_CODE_COMMIT") or None, None


def code_version() -> dict[str, Any]:
    """``{"package": version or None, "commit": git commit or None, "dirty": bool or None}``.

    The git state is read once per process (a long run reports the code it started with).
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("nowcast")
    except PackageNotFoundError:
        pkg = None
    commit, dirty = _git()
    return {"package": pkg, "commit": commit, "dirty": dirty}


def code_version_string() -> str:
    """:func:`code_version` in one token: ``<package>+g<commit[:10]>[.dirty]`` (or the package alone)."""
    v = code_version()
    pkg = v["package"] or "unknown"
    if not v["commit"]:
        return pkg
    return f"{pkg}+g{v['commit'][:10]}" + (".dirty" if v["dirty"] else "")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a local file's bytes (source files, checkpoints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def data_fingerprint(store: ObservationStoreLike, variable: str = "rain_rate") -> str:
    """SHA-256 (first 16 hex digits) of every stored frame of ``variable``, in time order.

    ``store``: an observation store. NaN (no coverage) hashes as -1, so coverage counts too.
    """
    h = hashlib.sha256()
    times = store.times()
    ny, nx = store.grid.shape
    batch = max(1, _BATCH_CELLS // max(1, ny * nx))  # frames read together (same bytes, in order)
    for i in range(0, len(times), batch):
        v = store.read_times(times[i : i + batch])[variable].values
        h.update(np.ascontiguousarray(np.nan_to_num(v, nan=-1.0)).tobytes())
    return h.hexdigest()[:16]


def record_times(times: Any) -> list[str]:  # noqa: ANN401 - anything pandas reads as times
    """Frame times as the import record writes them (UTC, to the second): the import writes them,
    :func:`source_fingerprint` checks the store's times against them."""
    return pd.DatetimeIndex(times).strftime("%Y-%m-%dT%H:%M:%S").tolist()


def source_fingerprint(store: ObservationStoreLike) -> str | None:
    """SHA-256 (first 16 hex digits) of where every stored rain frame came from: the source
    files' SHA-256, names, readers, import options and frame times (the store's import record,
    :meth:`nowcast.store.ObservationStore.record_imported`). Machine-independent.

    None when some stored frame is not covered by that record: frames that came from ingest or
    another writer, or frames of an import made before stores kept the record (import the same
    files again to add it: frames already stored are kept, not rewritten).
    """
    imported = getattr(store, "imported_files", None)
    record = imported() if imported is not None else {}
    if not record:
        return None
    by_source = getattr(store, "frames_by_source", dict)()
    if set(by_source) - {"import"}:
        return None
    covered = {t for entry in record.values() for t in entry.get("times", [])}
    if any(t not in covered for t in record_times(store.times())):
        return None
    canonical = json.dumps(sorted([sha, e.get("file"), e.get("reader"), e.get("options"), sorted(e.get("times", []))] for sha, e in record.items()), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
