"""Ingest benchmarks: backfill throughput from the replay source, and drop-folder lag.

1. **Backfill throughput**: one ingest run backfills a day of 5-minute slots (288) from the
   ``replay`` source into a fresh store on the archive's own grid (no regridding):
   KNMI 765x700 (92 real files) and OPERA CIRRUS 4400x3800 (13 real files). The archives
   are shorter than a day, so they are replayed cyclically with timestamps shifted by whole
   archive periods (``loop=True``, ``origin`` = the benchmark day). Times are taken from the
   file names (``time_format``) so the archive scan does not read every file up front.
   The 4400x3800 case ingests ``--large-frames`` frames (default 24; 288 takes ~20 min on a
   2-core machine) and reports the sustained rate and the time projected for 288 frames.
3. **Synthetic source**: time to compute one frame at 256x256 and 512x512.
2. **Drop-folder lag**: a producer thread drops KNMI files into a folder (written as
   ``.part`` then renamed) at random moments; a runner polls the folder every
   ``--poll`` seconds; a reader polls the store. Lag = time from the rename to the frame
   being readable (``store.has``) by a separate store handle.

Prints a table and writes ``benchmarks/out/bench_ingest.json``.

    python benchmarks/bench_ingest.py [--frames 288] [--large-frames 24] [--poll 1.0] [--lag-files 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest import IngestSettings, SourceRunner  # noqa: E402
from nowcast.grid import Grid  # noqa: E402
from nowcast.io import read_radar  # noqa: E402
from nowcast.sources import create_source  # noqa: E402
from nowcast.store import ObservationStore  # noqa: E402

SHARED = Path(os.environ.get("NOWCAST_SHARED_DATA", REPO.parent / "shared" / "data"))
DAY = pd.Timestamp("2026-01-01")

CASES = {
    "knmi-765x700": (SHARED / "radar" / "knmi" / "20100826", "RAD_NL25_RAP_5min_*.h5", "%Y%m%d%H%M"),
    "cirrus-4400x3800": (SHARED / "radar" / "opera-cirrus" / "20241126", "T_PABV21_C_EUOC_*.hdf", "%Y%m%d%H%M%S"),
}


def bench_backfill(name: str, frames: int, workdir: Path) -> dict:
    folder, pattern, fmt = CASES[name]
    files = sorted(folder.glob(pattern))
    if not files:
        return {"case": name, "skipped": f"{folder} absent"}
    grid = Grid.of(read_radar(files[0]))
    store = ObservationStore.create(str(workdir / f"{name}.zarr"), grid)
    until = DAY + (frames - 1) * pd.Timedelta("5min")
    src = create_source("replay", name=name, path=folder, pattern=pattern, time_format=fmt, origin=DAY, until=until, speed=float("inf"))
    settings = IngestSettings(backfill=pd.Timedelta("2D"), quarantine_dir=workdir / "quarantine", max_items_per_run=10_000)
    runner = SourceRunner(src, store, settings)
    t0 = time.perf_counter()
    rep = runner.run_once()
    seconds = time.perf_counter() - t0
    assert rep.ingested == frames, rep
    assert len(store.times()) == frames
    size = store.nbytes_stored()
    shutil.rmtree(workdir / f"{name}.zarr", ignore_errors=True)
    return {
        "case": name,
        "grid": list(grid.shape),
        "archive_files": len(files),
        "frames": frames,
        "seconds": round(seconds, 2),
        "frames_per_s": round(frames / seconds, 3),
        "projected_288_s": round(288 * seconds / frames, 1),
        "store_mb": round(size / 1e6, 1) if size else None,
    }


def bench_lag(n_files: int, poll: float, workdir: Path) -> dict:
    folder, pattern, _ = CASES["knmi-765x700"]
    files = sorted(folder.glob(pattern))[:n_files]
    if not files:
        return {"case": "dropfolder-lag", "skipped": f"{folder} absent"}
    grid = Grid.of(read_radar(files[0]))
    url = str(workdir / "lag.zarr")
    store = ObservationStore.create(url, grid)
    drop = workdir / "drop"
    drop.mkdir()
    src = create_source("directory", name="drop", path=drop)
    runner = SourceRunner(src, store, IngestSettings(backfill=pd.Timedelta("100D"), quarantine_dir=workdir / "q"))
    stop = threading.Event()

    def poll_loop() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            runner.run_once(pd.Timestamp("2010-08-26 12:00"))
            stop.wait(max(0.0, poll - (time.perf_counter() - t)))

    worker = threading.Thread(target=poll_loop, daemon=True)
    worker.start()
    reader = ObservationStore.open(url)
    rng = random.Random(0)
    lags = []
    for f in files:
        time.sleep(rng.uniform(0.2, poll * 1.5))
        t_slot = pd.Timestamp(read_radar(f).time.values[0])
        part = drop / (f.name + ".part")
        shutil.copy(f, part)
        part.rename(drop / f.name)
        t_drop = time.perf_counter()
        while not reader.has(t_slot):
            time.sleep(0.005)
            if time.perf_counter() - t_drop > 60:
                raise RuntimeError(f"{f.name} not ingested within 60 s")
        lags.append(time.perf_counter() - t_drop)
    stop.set()
    worker.join(10)
    s = pd.Series(lags)
    return {
        "case": "dropfolder-lag",
        "grid": list(grid.shape),
        "files": len(lags),
        "poll_s": poll,
        "lag_mean_s": round(float(s.mean()), 3),
        "lag_p50_s": round(float(s.median()), 3),
        "lag_p95_s": round(float(s.quantile(0.95)), 3),
        "lag_max_s": round(float(s.max()), 3),
    }


def bench_synthetic(n: int = 20) -> list[dict]:
    """Time to generate one synthetic frame (rain + lightning) at 256x256 and 512x512."""
    from nowcast.sources.synthetic import SyntheticRadar

    out = []
    for size in (256, 512):
        radar = SyntheticRadar(SyntheticRadar.default_grid(size, size), seed=0)
        radar.frame(DAY)  # warm the epoch noise cache, as a live source would be
        times = pd.date_range(DAY, periods=n, freq="5min") + pd.Timedelta("1h")
        t0 = time.perf_counter()
        for t in times:
            radar.frame(t)
        per = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        SyntheticRadar(SyntheticRadar.default_grid(size, size), seed=1).frame(DAY + pd.Timedelta("400D"))
        cold = time.perf_counter() - t0
        out.append({"case": f"synthetic-{size}x{size}", "frames": n, "mean_frame_s": round(per, 4), "cold_first_frame_s": round(cold, 3)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=288, help="frames of the 765x700 backfill (default a day)")
    p.add_argument("--large-frames", type=int, default=24, help="frames of the 4400x3800 backfill")
    p.add_argument("--poll", type=float, default=1.0, help="drop-folder poll interval, seconds")
    p.add_argument("--lag-files", type=int, default=10)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "bench_ingest.json")
    args = p.parse_args(argv)
    results = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        results.append(bench_backfill("knmi-765x700", args.frames, work))
        results.append(bench_backfill("cirrus-4400x3800", args.large_frames, work))
        results.append(bench_lag(args.lag_files, args.poll, work))
    synthetic = bench_synthetic()
    print(f"{'case':<20} {'grid':>11} {'frames':>7} {'seconds':>8} {'frames/s':>9} {'288 frames':>11}")
    for r in results[:2]:
        if "skipped" in r:
            print(f"{r['case']:<20} skipped: {r['skipped']}")
            continue
        print(f"{r['case']:<20} {'x'.join(map(str, r['grid'])):>11} {r['frames']:>7} {r['seconds']:>8.1f} {r['frames_per_s']:>9.2f} {r['projected_288_s']:>10.0f}s")
    lag = results[2]
    if "skipped" not in lag:
        print(f"\ndrop-folder lag (poll every {lag['poll_s']} s, {lag['files']} files): mean {lag['lag_mean_s']:.2f} s, "
              f"p50 {lag['lag_p50_s']:.2f} s, p95 {lag['lag_p95_s']:.2f} s, max {lag['lag_max_s']:.2f} s")
    for r in synthetic:
        print(f"{r['case']}: {1000 * r['mean_frame_s']:.1f} ms per frame ({r['cold_first_frame_s']:.2f} s cold, new instance)")
    results.extend(synthetic)
    doc = {
        "benchmark": "ingest",
        "when": pd.Timestamp.now(tz="UTC").isoformat(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # other work on the machine skews the figures: the 1-min load average before/after
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(f"\n1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
