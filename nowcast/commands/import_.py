"""``nowcast import``: bulk-load archived radar files into an observation store.

Each file is sniffed and decoded by the readers, brought onto the store grid (regridded,
cropped or downsampled as asked) and appended. A bad file (truncated, corrupt, empty, unknown)
is reported in one line naming the file and the reason; the import goes on with the next
file and the store is untouched by it, and the command exits with status 1 at the end.

A new store takes its cadence from the archive: the greatest common step of the times of its
first frames (a 6-minute archive makes a 6-minute store); ``--cadence`` fixes it instead. An
existing store keeps its own cadence; frames off it are failures.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.grid import Grid
from nowcast.store import ObservationStore, StoreError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from nowcast.io import formats_help

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = formats_help()
    p.add_argument("paths", nargs="+", type=Path, help="radar files and/or directories (searched recursively)")
    p.add_argument(
        "--product",
        type=Path,
        default=None,
        help="product file (TOML/YAML) describing bare 2-D arrays: read every file with the 'gridded' reader "
        "(examples: configs/products/, docs/readers.md)",
    )
    p.add_argument("--store", required=True, help="observation store path or s3:// URL (created if absent)")
    p.add_argument(
        "--grid",
        default="native",
        help="target grid: 'native' (grid of the first file; default), or "
        "'CRS,xmin,ymin,xmax,ymax,resolution' (e.g. 'EPSG:3035,4000000,2600000,4500000,3100000,2000')",
    )
    p.add_argument("--downsample", type=int, default=1, help="block-mean downsampling factor applied after reading")
    p.add_argument("--method", choices=["nearest", "area_mean"], default="area_mean", help="regridding method")
    p.add_argument(
        "--cadence",
        default=None,
        help="time step of a new store (default: detected from the times of the first files; 5min when they do not tell)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace frames already stored")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


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
) -> ImportSummary:
    """Import ``files`` into the store at ``store_url``; returns the summary. Bad files never stop it.

    ``product`` (a :class:`nowcast.io.gridded.Product`) reads every file with the gridded reader.
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

    def fail(path: Path, exc: Exception) -> None:
        summary.failed += 1
        reason = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        summary.reasons[str(path)] = reason
        log.error("skipped %s", reason)
        tqdm.write(f"error: {reason}", file=sys.stderr)

    def put(path: Path, frames: xr.DataArray) -> None:
        assert store is not None
        for i in range(frames.sizes[dims.TIME]):
            frame = frames.isel({dims.TIME: [i]})
            if store.append(frame, source=f"import:{path.name}", overwrite=overwrite):
                summary.written += 1
            else:
                summary.skipped += 1

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
    for path in bar:
        bar.set_postfix_str(path.name[-40:], refresh=False)
        try:
            frames = read_radar(path, reader="gridded", product=product) if product is not None else read_radar(path)
            frames = to_store_grid(frames, grid, downsample, method)
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


def run(args: argparse.Namespace) -> int:
    product = None
    if args.product is not None:
        from nowcast.io.gridded import load_product

        product = load_product(args.product)  # validated before any file is read
    files = expand_paths(args.paths)
    if not files:
        raise FileNotFoundError("no files to import")
    summary = import_files(
        files,
        args.store,
        grid=parse_grid(args.grid),
        downsample=args.downsample,
        method=args.method,
        cadence=args.cadence,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        product=product,
    )
    print(f"{args.store}: {summary.line()}")
    if summary.failed:
        reasons = Counter(r.split(": ", 1)[-1][:80] for r in summary.reasons.values())
        for reason, n in reasons.most_common(5):
            print(f"  {n} x {reason}", file=sys.stderr)
    return 0 if (summary.written or summary.skipped) and not summary.failed else 1


__all__ = ["ImportSummary", "detect_cadence", "import_files", "expand_paths", "parse_grid"]
