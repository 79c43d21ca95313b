"""``nowcast import``: bulk-load archived radar files into an observation store.

The work is :func:`nowcast.bulk_import.import_files`. Each file is sniffed and decoded by the readers, brought onto the store grid (regridded,
cropped or downsampled as asked) and appended. A bad file (truncated, corrupt, empty, unknown)
is reported in one line naming the file and the reason; the import goes on with the next
file and the store is untouched by it, and the command exits with status 1 at the end.

A new store takes its cadence from the archive: the greatest common step of the times of its
first frames (a 6-minute archive makes a 6-minute store); ``--cadence`` fixes it instead. An
existing store keeps its own cadence; frames off it are failures.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from nowcast.bulk_import import expand_paths, import_files, parse_grid


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


def _print_failure(reason: str) -> None:
    """One line on stderr per bad file, above the progress bar."""
    from tqdm import tqdm

    tqdm.write(f"error: {reason}", file=sys.stderr)


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
        on_failure=_print_failure,
    )
    print(f"{args.store}: {summary.line()}")
    if summary.failed:
        reasons = Counter(r.split(": ", 1)[-1][:80] for r in summary.reasons.values())
        for reason, n in reasons.most_common(5):
            print(f"  {n} x {reason}", file=sys.stderr)
    return 0 if (summary.written or summary.skipped) and not summary.failed else 1

