"""Bulk import of archived radar files into an observation store (``nowcast import``).

Each file is sniffed and decoded by the readers, brought onto the store grid (regridded,
cropped or downsampled as asked) and appended. A bad file (truncated, corrupt, empty, unknown)
is recorded with a one-line reason naming the file; the import goes on with the next file and
the store is untouched by it.

A new store takes its cadence from the archive: the greatest common step of the times of its
first frames (a 6-minute archive makes a 6-minute store); ``cadence`` fixes it instead. An
existing store keeps its own cadence; frames off it are failures.

The store records every source file an import stored frames from (or found already stored):
its SHA-256, name, reader, the import options and the frame times (:meth:`ObservationStore.record_imported`).
:func:`nowcast.provenance.source_fingerprint` hashes that record: unlike the content
fingerprint, it does not depend on the last bits a reader's floating point gives on one CPU.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.grid import Grid
from nowcast.provenance import record_times, sha256_file
from nowcast.store import ObservationStore, StoreError

log = logging.getLogger(__name__)


@dataclass
class ImportSummary:
    """Counts of an import run and the reasons of failures (file -> reason)."""

    written: int = 0
    skipped: int = 0
    failed: int = 0
    reasons: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.written} frames written, {self.skipped} skipped (already stored), {self.failed} failed"


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files named directly, plus every regular file under named directories (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def parse_grid(spec: str) -> Grid | None:
    """None for 'native', else a Grid from 'CRS,xmin,ymin,xmax,ymax,resolution'."""
    if spec == "native":
        return None
    parts = spec.split(",")
    if len(parts) != 6:
        raise ValueError(f"--grid {spec!r}: expected 'native' or 'CRS,xmin,ymin,xmax,ymax,resolution'")
    crs, *nums = parts
    xmin, ymin, xmax, ymax, res = (float(v) for v in nums)
    return Grid.from_bounds(crs, xmin, ymin, xmax, ymax, res)


def to_store_grid(frames: xr.DataArray, grid: Grid | None, downsample: int, method: str) -> xr.DataArray:
    """Frames (time, y, x) brought onto the target grid (or downsampled on their own)."""
    from nowcast import regrid

    if downsample > 1:
        frames = regrid.downsample(frames, downsample)
    if grid is not None and not Grid.of(frames).same_as(grid):
        frames = regrid.regrid(frames, grid, method=method)
    return frames


def import_options(grid: Grid | None, downsample: int, method: str, product: object | None) -> dict[str, object]:
    """What an import does to a file's frames besides reading it (recorded with each source file)."""
    opts: dict[str, object] = {"downsample": int(downsample), "method": method}
    if grid is not None:
        opts["grid"] = f"{grid.name or 'custom'} {grid.shape[0]}x{grid.shape[1]}"
    if product is not None and hasattr(product, "model_dump_json"):
        opts["product_sha256"] = hashlib.sha256(product.model_dump_json().encode()).hexdigest()[:16]
    return opts


def import_files(
    files: list[Path],
    store_url: str,
    grid: Grid | None = None,
    downsample: int = 1,
    method: str = "area_mean",
    cadence: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    storage_options: dict | None = None,
    product: object | None = None,
    on_failure: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import ``files`` into the store at ``store_url``; returns the summary. Bad files never stop it.

    ``product`` (a :class:`nowcast.io.gridded.Product`) reads every file with the gridded reader.
    ``on_failure`` is called with each failure's one-line reason (the CLI prints it above the
    progress bar); every failure is logged either way.
    """
    from tqdm import tqdm

    from nowcast.io import ReaderError, read_radar

    summary = ImportSummary()
    store: ObservationStore | None = None
    existing = _existing_cadence(store_url, storage_options)
    if existing is not None and cadence is not None and pd.Timedelta(cadence) != existing:
        raise StoreError(f"{store_url}: existing store cadence {existing} differs from --cadence {pd.Timedelta(cadence)}")
    #: frames read before a new store's cadence is known (bounded: see _cadence_known)
    pending: list[tuple[Path, xr.DataArray]] = []
    #: the source files whose frames are in the store now ({SHA-256: record}), saved at the end
    stored_from: dict[str, dict[str, object]] = {}
    options = import_options(grid, downsample, method, product)

    def fail(path: Path, exc: Exception) -> None:
        summary.failed += 1
        reason = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        summary.reasons[str(path)] = reason
        log.error("skipped %s", reason)
        if on_failure is not None:
            on_failure(reason)

    def put(path: Path, frames: xr.DataArray) -> None:
        assert store is not None
        for i in range(frames.sizes[dims.TIME]):
            frame = frames.isel({dims.TIME: [i]})
            if store.append(frame, source=f"import:{path.name}", overwrite=overwrite):
                summary.written += 1
            else:
                summary.skipped += 1
        reader = str(frames.attrs.get("reader", "unknown"))
        stored_from[sha256_file(path)] = {"file": path.name, "reader": reader, "options": options, "times": record_times(frames[dims.TIME].values)}

    def open_store(first: xr.DataArray) -> ObservationStore:
        step = existing or (pd.Timedelta(cadence) if cadence is not None else detect_cadence([f for _, f in pending] + [first]))
        return ObservationStore.open_or_create(store_url, grid or Grid.of(first), step, storage_options)

    def flush_pending() -> None:
        for p, f in pending:
            try:
                put(p, f)
            except (StoreError, ValueError, OSError) as exc:
                fail(p, exc)
        pending.clear()

    bar = tqdm(files, unit="file", disable=not progress, file=sys.stderr)
    try:
        for path in bar:
            bar.set_postfix_str(path.name[-40:], refresh=False)
            try:
                raw = read_radar(path, reader="gridded", product=product) if product is not None else read_radar(path)
                frames = to_store_grid(raw, grid, downsample, method)
                frames.attrs["reader"] = raw.attrs.get("reader", "unknown")
                if store is None:
                    if existing is None and cadence is None and not _cadence_known([f for _, f in pending] + [frames]):
                        pending.append((path, frames))
                        continue
                    store = open_store(frames)
                    grid = store.grid
                    flush_pending()
                put(path, frames)
            except (ReaderError, StoreError, ValueError, OSError) as exc:
                fail(path, exc)
        if pending:  # fewer files than needed to be sure of the cadence: use what they tell
            last_path, last = pending.pop()
            try:
                store = open_store(last)
            except (StoreError, ValueError, OSError) as exc:
                for p, _ in [*pending, (last_path, last)]:
                    fail(p, exc)
                return summary
            grid = store.grid
            pending.append((last_path, last))
            flush_pending()
    finally:  # an interrupted import still records the files whose frames it stored
        if store is not None:
            store.record_imported(stored_from)
    return summary


#: a new store's cadence is decided once the first frames span this many distinct times
CADENCE_TIMES = 3
#: ... or once this many files were read (or this many bytes of frames are held)
CADENCE_FILES = 6
CADENCE_BYTES = 512 * 1024**2


def _frame_times(frames: list[xr.DataArray]) -> list[pd.Timestamp]:
    return sorted({dims.to_utc_timestamp(t) for f in frames for t in f[dims.TIME].values})


def _cadence_known(frames: list[xr.DataArray]) -> bool:
    held = sum(int(f.nbytes) for f in frames)
    return len(_frame_times(frames)) >= CADENCE_TIMES or len(frames) >= CADENCE_FILES or held >= CADENCE_BYTES


def detect_cadence(frames: list[xr.DataArray], default: pd.Timedelta | str = dims.DEFAULT_CADENCE) -> pd.Timedelta:
    """The greatest common step of the frames' times, when it is whole minutes dividing a day;
    ``default`` for a single time or irregular times."""
    import math

    times = _frame_times(frames)
    steps = [int((b - a).total_seconds()) for a, b in zip(times, times[1:], strict=False)]
    step = 0
    for s in steps:
        step = math.gcd(step, s)
    if step >= 60 and step % 60 == 0 and 86400 % step == 0:
        log.info("cadence of the archive: %s (from %d times)", pd.Timedelta(seconds=step), len(times))
        return pd.Timedelta(seconds=step)
    if steps:
        log.warning("cannot tell the archive's cadence from its times %s; using %s", [t.isoformat() for t in times], default)
    return pd.Timedelta(default)


def _existing_cadence(store_url: str, storage_options: dict | None) -> pd.Timedelta | None:
    """Cadence of the store at ``store_url``, None when there is none (yet)."""
    try:
        return ObservationStore.open(store_url, "r", storage_options).cadence
    except StoreError as exc:
        if "no observation store" in str(exc):
            return None
        raise


__all__ = ["CADENCE_BYTES", "CADENCE_FILES", "CADENCE_TIMES", "ImportSummary", "detect_cadence", "expand_paths",
           "import_files", "parse_grid", "to_store_grid"]
