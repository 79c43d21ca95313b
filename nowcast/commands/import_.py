"""``nowcast import``: bulk-load archived radar files into an observation store.

Each file is sniffed and decoded by the readers, brought onto the store grid (regridded,
cropped or downsampled as asked) and appended. A bad file (truncated, corrupt, empty, unknown)
is reported in one line naming the file and the reason; the import goes on with the next
file and the store is untouched by it.
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
    p.add_argument("--cadence", default="5min", help="time step of the store (default 5min)")
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
    cadence: str = "5min",
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
    bar = tqdm(files, unit="file", disable=not progress, file=sys.stderr)
    for path in bar:
        bar.set_postfix_str(path.name[-40:], refresh=False)
        try:
            frames = read_radar(path, reader="gridded", product=product) if product is not None else read_radar(path)
            frames = to_store_grid(frames, grid, downsample, method)
            if store is None:
                store_grid = grid or Grid.of(frames)
                store = ObservationStore.open_or_create(store_url, store_grid, cadence, storage_options)
                grid = store.grid
            for i in range(frames.sizes[dims.TIME]):
                frame = frames.isel({dims.TIME: [i]})
                if store.append(frame, source=f"import:{path.name}", overwrite=overwrite):
                    summary.written += 1
                else:
                    summary.skipped += 1
        except (ReaderError, StoreError, ValueError, OSError) as exc:
            summary.failed += 1
            reason = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            summary.reasons[str(path)] = reason
            log.error("skipped %s", reason)
            tqdm.write(f"error: {reason}", file=sys.stderr)
    return summary


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
    return 0 if summary.written or summary.skipped else 1


__all__ = ["ImportSummary", "import_files", "expand_paths", "parse_grid", "pd"]
