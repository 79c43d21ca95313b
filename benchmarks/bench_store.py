"""Observation store: import throughput, size on disk, window-read latency, compression codecs.

For KNMI (765x700, 1 km) and OPERA CIRRUS (4400x3800, 1 km) from ../shared/data/radar:

1. ``nowcast import`` of the archive files into a fresh store (read + decode + append, the
   store's default codec): frames/s and MB/s of raw input files;
2. the decoded frames written again into stores that differ only by codec: zstd level 5 (the
   store's default), Blosc/zstd with bit-shuffle, no compression: append frames/s, stored
   bytes per frame vs the raw input file and vs float32, and the latency of a 12-frame window
   with a 512x512 crop (median and p95 over repeated reads, warm page cache).

Runnable alone: ``python benchmarks/bench_store.py [--quick]``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import main, median, percentile, repeat, result, shared_data, timed  # type: ignore[import-not-found]

NAME = "store"
WINDOW_FRAMES = 12
CROP = 512

#: (label, folder under radar/, files in quick mode, files in full mode)
DATASETS = (("knmi", "knmi/20100826", 12, 92), ("opera-cirrus", "opera-cirrus/20241126", 2, 13))


def codecs() -> dict[str, Callable[[], Any]]:
    """Codec name -> factory of the store's ``compressors`` argument."""
    from zarr.codecs import BloscCodec, BloscShuffle

    from nowcast import store as store_mod

    default = store_mod.default_compressor()
    label = f"{type(default).__name__.removesuffix('Codec').lower()}-{getattr(default, 'level', '')} (default)"
    return {
        label: store_mod.default_compressor,
        "blosc-zstd-bitshuffle": lambda: BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.bitshuffle),
        "none": lambda: None,
    }


def _write_with_codec(frames: list[Any], url: str, grid: Any, factory: Callable[[], Any]) -> tuple[float, Any]:
    """Append ``frames`` (DataArray (time=1, y, x)) into a new store whose codec is ``factory()``."""
    import nowcast.store as store_mod

    original = store_mod.default_compressor
    store_mod.default_compressor = factory  # the store builds its arrays through this hook
    try:
        store = store_mod.ObservationStore.create(url, grid)
        store.append(frames[0])  # day group creation is not part of the append cost
        with timed(trace_memory=False) as t:
            for f in frames[1:]:
                store.append(f)
    finally:
        store_mod.default_compressor = original
    return t.seconds / max(len(frames) - 1, 1), store


def _bench_dataset(label: str, files: list[Path], work: Path, repeats: int) -> list[dict[str, Any]]:
    import pandas as pd

    from nowcast import dims
    from nowcast.bulk_import import import_files
    from nowcast.io import read_radar
    from nowcast.store import ObservationStore

    raw_bytes = sum(f.stat().st_size for f in files)
    url = str(work / f"{label}-import.zarr")
    read_radar(files[0])  # warm-up: the readers' lazy imports are not part of the throughput
    with timed() as t_import:
        summary = import_files(files, url, progress=False)
    if summary.written == 0:
        raise RuntimeError(f"{label}: nothing imported: {summary.reasons}")
    store = ObservationStore.open(url)
    ny, nx = store.grid.shape
    times = store.times()
    # WINDOW_FRAMES consecutive slots of decoded frames (cycling when fewer files were imported)
    slots = pd.date_range(times[0], periods=max(WINDOW_FRAMES, len(times)), freq=store.cadence)
    frames = []
    for i, t in enumerate(slots):
        src = store.window(times[i % len(times)], 1)[dims.RAIN_RATE]
        frames.append(src.assign_coords({dims.TIME: [t.to_datetime64()]}))
    r0, c0 = max((ny - CROP) // 2, 0), max((nx - CROP) // 2, 0)
    rows_sl, cols_sl = slice(r0, r0 + CROP), slice(c0, c0 + CROP)
    raw_per_file = raw_bytes / len(files)
    out = []
    for codec, factory in codecs().items():
        curl = str(work / f"{label}-{codec.split()[0]}.zarr")
        with timed() as t_write:
            per_frame_s, cstore = _write_with_codec(frames, curl, store.grid, factory)
        stored = cstore.nbytes_stored() or 0
        per_frame = stored / len(frames)
        end = slots[WINDOW_FRAMES - 1]
        reader = ObservationStore.open(curl)
        win = reader.window(end, WINDOW_FRAMES, rows=rows_sl, cols=cols_sl)
        assert bool(win["present"].all()), "window must read stored frames"
        lat = repeat(lambda r=reader, e=end: r.window(e, WINDOW_FRAMES, rows=rows_sl, cols=cols_sl), repeats)
        default = "(default)" in codec
        out.append(
            {
                "dataset": label,
                "grid": f"{ny}x{nx}",
                "codec": codec,
                "files": len(files) if default else None,
                "import_frames_per_s": summary.written / t_import.seconds if default else None,
                "import_raw_mb_per_s": raw_bytes / 2**20 / t_import.seconds if default else None,
                "append_frames_per_s": 1.0 / per_frame_s,
                "stored_mb_per_frame": per_frame / 2**20,
                "vs_raw_file": per_frame / raw_per_file,
                "vs_float32": per_frame / (ny * nx * 4),
                "window_p50_ms": 1000 * median(lat),
                "window_p95_ms": 1000 * percentile(lat, 95),
                "peak_py_mb": max(t_import.peak_py_mb if default else 0.0, t_write.peak_py_mb),
            }
        )
        del win
    del frames
    return out


def run(quick: bool, device: str) -> dict[str, Any]:
    radar = shared_data() / "radar"
    rows: list[dict[str, Any]] = []
    skipped = []
    with tempfile.TemporaryDirectory(prefix="nowcast-bench-store-") as tmp:
        for label, folder, n_quick, n_full in DATASETS:
            d = radar / folder
            files = sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith(".")) if d.is_dir() else []
            if not files:
                skipped.append(f"{label}: no files in {d}")
                continue
            files = files[: n_quick if quick else n_full]
            rows.extend(_bench_dataset(label, files, Path(tmp), repeats=5 if quick else 20))
    notes = [
        "import = read + decode + append with the default codec (nowcast import); raw MB/s = input file bytes per second",
        f"append/size/window columns: the same decoded frames written per codec; window = {WINDOW_FRAMES} frames, {CROP}x{CROP} centre crop, warm page cache",
        "vs_raw_file: stored bytes per frame / input file bytes per frame; vs_float32: / uncompressed float32 frame",
        "KNMI is ~74% outside coverage (NaN): compresses well; CIRRUS frames are sharded (256x256 inner chunks)",
    ]
    return result(NAME, rows, notes=notes, skipped=skipped)


if __name__ == "__main__":
    raise SystemExit(main(NAME, run))
