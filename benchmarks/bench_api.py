"""Load test of the API against a running ``nowcast serve`` on loopback (not a timed test).

Starts ``nowcast serve`` (synthetic ingest + inference + API) in a temporary directory, then,
while ingest and inference keep running, measures requests/s and p50/p99 latency of

- XYZ tiles (random tiles over the domain at zoom 6-8, observed and forecast keys),
- point series (random points in the domain),
- the frame index,

at 1, 16 and 64 concurrent clients (httpx async), each level bounded by a request count and
a time limit. In parallel it polls /v1/status to time each new observed frame until its
forecast is served (client side), and reads the server's own frame-to-forecast histogram.

The synthetic source runs at a 1-minute cadence by default (``--cadence``) so that several
new frames arrive during the run. Prints a table and writes JSON to benchmarks/out/.

    .venv/bin/python benchmarks/bench_api.py [--levels 1 16 64] [--requests 300] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path, port: int, cadence: str, model: str) -> subprocess.Popen:
    config = workdir / "serve.toml"
    config.write_text(
        f'model = "{model}"\n'
        "[ingest]\n"
        'source = "synthetic"\n'
        f'store = {{ cadence = "{cadence}" }}\n'
        '[ingest.source_options]\nbackfill = "20min"\ninterval = 5\njitter = 0\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOWCAST_")}
    env["PYSTEPS_SILENT_IMPORT"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "nowcast.cli", "serve", "--config", str(config), "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_first_forecast(url: str, timeout: float) -> tuple[float, dict]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            st = httpx.get(url + "/v1/status", timeout=5).json()
            if st.get("forecast"):
                return time.time() - t0, st
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"no forecast within {timeout} s")


def tiles_over(bbox: list[float], zooms: tuple[int, ...] = (6, 7, 8)) -> list[tuple[int, int, int]]:
    """All tiles intersecting the lon/lat bbox at the given zooms."""
    out = []
    lon0, lat0, lon1, lat1 = bbox
    for z in zooms:
        n = 1 << z

        def tx(lon: float, n: int = n) -> int:
            return min(n - 1, max(0, int((lon + 180) / 360 * n)))

        def ty(lat: float, n: int = n) -> int:
            r = math.radians(lat)
            return min(n - 1, max(0, int((1 - math.asinh(math.tan(r)) / math.pi) / 2 * n)))

        for x in range(tx(lon0), tx(lon1) + 1):
            for y in range(ty(lat1), ty(lat0) + 1):
                out.append((z, x, y))
    return out


async def load(url: str, make_path, concurrency: int, n_requests: int, seconds: float) -> dict:  # noqa: ANN001
    """Run ``n_requests`` (or until ``seconds`` pass) with ``concurrency`` clients; latency stats."""
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    issued = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal issued, errors
            while issued < n_requests and time.perf_counter() < deadline:
                issued += 1
                path = make_path()
                t = time.perf_counter()
                try:
                    r = await client.get(path)
                    await r.aread()
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code >= 400:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")  # noqa: E731
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "statuses": statuses,
        "seconds": round(wall, 3),
        "rps": round(len(latencies) / wall, 1) if wall > 0 else None,
        "p50_ms": round(q(0.50), 2),
        "p99_ms": round(q(0.99), 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
    }


async def watch_frames(url: str, stop: asyncio.Event, out: list[dict]) -> None:
    """Client-side frame -> forecast latency: first time a new last_frame is seen -> its forecast seen."""
    pending: dict[str, float] = {}
    last_seen = None
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not stop.is_set():
            try:
                st = (await client.get("/v1/status")).json()
            except (httpx.HTTPError, ValueError):
                await asyncio.sleep(0.2)
                continue
            now = time.time()
            frame = (st.get("observations") or {}).get("last_frame")
            init = (st.get("forecast") or {}).get("init_time")
            if frame and frame != last_seen:
                if last_seen is not None:
                    pending[frame] = now
                last_seen = frame
            if init in pending:
                out.append({"frame": init, "seconds": round(now - pending.pop(init), 3)})
            await asyncio.sleep(0.2)


def server_frame_latency(url: str) -> dict:
    text = httpx.get(url + "/metrics", timeout=10).text
    vals = {}
    for line in text.splitlines():
        for key in ("nowcast_frame_to_forecast_seconds_sum", "nowcast_frame_to_forecast_seconds_count", "nowcast_forecast_duration_seconds_sum", "nowcast_forecast_duration_seconds_count"):
            if line.startswith(key + " "):
                vals[key] = float(line.split()[1])
    out = {}
    if vals.get("nowcast_frame_to_forecast_seconds_count"):
        out["frame_to_forecast_mean_s"] = round(vals["nowcast_frame_to_forecast_seconds_sum"] / vals["nowcast_frame_to_forecast_seconds_count"], 3)
        out["runs"] = int(vals["nowcast_frame_to_forecast_seconds_count"])
    if vals.get("nowcast_forecast_duration_seconds_count"):
        out["forecast_compute_mean_s"] = round(vals["nowcast_forecast_duration_seconds_sum"] / vals["nowcast_forecast_duration_seconds_count"], 3)
    return out


async def run_bench(url: str, args: argparse.Namespace) -> dict:
    frames = httpx.get(url + "/v1/frames", timeout=10).json()
    keys = [f["key"] for f in frames["observed"][-6:]] + [f["key"] for f in frames["forecast"]]
    tiles = tiles_over(frames["bbox_lonlat"])
    lon0, lat0, lon1, lat1 = frames["bbox_lonlat"]
    rng = random.Random(args.seed)
    # points inside the (projected) domain: shrink the lon/lat box a little
    dl, dt = (lon1 - lon0) * 0.2, (lat1 - lat0) * 0.2

    def tile_path() -> str:
        z, x, y = rng.choice(tiles)
        return f"/v1/tiles/rain/{rng.choice(keys)}/{z}/{x}/{y}.png"

    def point_path() -> str:
        return f"/v1/point?lat={rng.uniform(lat0 + dt, lat1 - dt):.4f}&lon={rng.uniform(lon0 + dl, lon1 - dl):.4f}"

    def frames_path() -> str:
        return "/v1/frames"

    stop = asyncio.Event()
    frame_latency: list[dict] = []
    watcher = asyncio.create_task(watch_frames(url, stop, frame_latency))
    results = []
    for name, make in (("tiles", tile_path), ("point", point_path), ("frames", frames_path)):
        for c in args.levels:
            r = await load(url, make, c, args.requests, args.seconds)
            r["endpoint"] = name
            results.append(r)
            print(f"  {name:7s} c={c:3d}: {r['rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}", flush=True)
    # wait (bounded) for enough new frames to time frame -> forecast
    deadline = time.time() + args.max_wait
    while len(frame_latency) < args.frames and time.time() < deadline:
        await asyncio.sleep(0.5)
    stop.set()
    await watcher
    return {"load": results, "frame_to_forecast_client": frame_latency, "tiles_in_domain": len(tiles), "keys": len(keys)}


def print_table(report: dict) -> None:
    print()
    print(f"{'endpoint':8s} {'clients':>7s} {'requests':>8s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s}")
    for r in report["load"]:
        print(f"{r['endpoint']:8s} {r['concurrency']:7d} {r['requests']:8d} {r['rps']:8.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:6d}")
    fl = [x["seconds"] for x in report["frame_to_forecast_client"]]
    print()
    print(f"first forecast after start: {report['first_forecast_s']:.1f} s")
    if fl:
        print(f"new frame -> its forecast served (client side, {len(fl)} frames): mean {statistics.fmean(fl):.2f} s, max {max(fl):.2f} s")
    else:
        print("new frame -> forecast: no new frame arrived within the wait")
    print(f"server side: {report['server']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64], help="concurrent clients")
    p.add_argument("--requests", type=int, default=300, help="max requests per endpoint and level")
    p.add_argument("--seconds", type=float, default=8.0, help="max seconds per endpoint and level")
    p.add_argument("--cadence", default="1min", help="synthetic store cadence (new frames this often)")
    p.add_argument("--model", default="extrapolation")
    p.add_argument("--frames", type=int, default=2, help="new frames to time frame -> forecast")
    p.add_argument("--max-wait", type=float, default=150.0, help="max extra seconds to wait for them")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "bench_api.json")
    args = p.parse_args(argv)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="nowcast-bench-") as tmp:
        proc = start_server(Path(tmp), port, args.cadence, args.model)
        try:
            first, status = wait_first_forecast(url, 120)
            print(f"server up, first forecast after {first:.1f} s ({status['forecast']['model']})", flush=True)
            report = asyncio.run(run_bench(url, args))
            report["server"] = server_frame_latency(url)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    report.update(
        first_forecast_s=round(first, 2),
        cadence=args.cadence,
        model=args.model,
        machine={"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
