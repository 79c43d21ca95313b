"""``nowcast info STORE``: describe an observation store (time range, gaps, grid, CRS, sizes)."""

from __future__ import annotations

import argparse
import json

from nowcast.store import ObservationStore


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="observation store path or s3:// URL")
    p.add_argument("--json", action="store_true", help="print the description as JSON")


def _human(n: int | None) -> str:
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def format_info(info: dict) -> str:
    g = info["grid"]
    lines = [
        f"store:      {info['url']} ({info['format']})",
        f"frames:     {info['frames']} rain, {info['lightning_frames']} lightning, cadence {info['cadence']}",
        f"time range: {info['first']} .. {info['last']}",
        f"gaps:       {len(info['gaps'])}" + "".join(f"\n  {a} .. {b} ({n} slots)" for a, b, n in info["gaps"][:20]),
        f"grid:       {g['shape'][0]} x {g['shape'][1]} cells, {g['resolution']:g} CRS units",
        f"bounds:     {', '.join(f'{b:.1f}' for b in g['bounds'])}",
        f"lon/lat:    {', '.join(f'{b:.3f}' for b in g['bbox_lonlat'])}",
        f"crs:        {info['crs']}",
        f"size:       {_human(info['size_bytes'])} stored, {_human(info['uncompressed_rain_bytes'])} raw rain float32",
        f"sources:    {info.get('imported_files', 0)} imported files"
        + (f", source fingerprint {info['source_fingerprint']}" if info.get("source_fingerprint") else " (no source fingerprint: not every frame was imported with a record)"),
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from nowcast.provenance import source_fingerprint

    store = ObservationStore.open(args.store)
    info = store.info()
    info["source_fingerprint"] = source_fingerprint(store)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
