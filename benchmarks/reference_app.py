"""The reference of the API benchmark: a minimal FastAPI app serving a 20 KB PNG from memory.

It measures what the web stack itself (uvicorn + FastAPI, same versions, same server options
as ``nowcast serve``, one worker) can do on this machine, so that ``bench_api.py`` reports
the API's throughput as a ratio to it.

    python benchmarks/reference_app.py --port 8900
"""

from __future__ import annotations

import argparse
import io
import zlib

import numpy as np


def reference_png(target_bytes: int = 20_000, seed: int = 0) -> bytes:
    """A 256x256 RGBA PNG of about ``target_bytes`` (noise over a flat background), built in memory."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = np.zeros((256, 256, 4), dtype=np.uint8)
    img[..., 3] = 255
    img[..., 2] = 180
    # noise in a fraction of the rows sets the compressed size
    lo, hi = 1, 256
    while lo < hi:  # smallest number of noisy rows reaching the target size
        mid = (lo + hi) // 2
        trial = img.copy()
        trial[:mid, :, :3] = rng.integers(0, 256, (mid, 256, 3), dtype=np.uint8)
        if len(zlib.compress(trial.tobytes(), 1)) >= target_bytes:
            hi = mid
        else:
            lo = mid + 1
    img[:lo, :, :3] = np.random.default_rng(seed).integers(0, 256, (lo, 256, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, mode="RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def create_reference_app():  # -> FastAPI
    """``GET /tile.png``: the same PNG bytes every time (no I/O, no computation)."""
    from fastapi import FastAPI, Response

    body = reference_png()
    app = FastAPI()

    @app.get("/tile.png")
    async def tile() -> Response:
        return Response(body, media_type="image/png", headers={"Cache-Control": "public, max-age=31536000, immutable"})

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8900)
    args = p.parse_args(argv)
    # the options nowcast serve gives uvicorn (cli/commands/serve.py)
    config = uvicorn.Config(create_reference_app(), host=args.host, port=args.port, log_level="warning", lifespan="on", access_log=False)
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
