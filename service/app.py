"""The FastAPI application: ``create_app(settings)`` builds a fresh app (no import-time state).

The app serves the v1 API, the Prometheus metrics and the dashboard. Inference does not run
per request: pass an :class:`~service.inference.InferenceLoop` (a thread of this process) or
an :class:`~service.inference_process.InferenceProcess` (the proxy of a child process; what
``nowcast serve`` passes by default) to expose its status and the admin routes; ``create_app``
only starts/stops it with the app's lifespan when ``start_inference`` is true.
"""

from __future__ import annotations

import gc
import importlib
import logging
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from nowcast.forecast_store import ForecastStoreError
from service.cache import CachedBody, LRUCache
from service.data import BadRequest, DataAccess, NotFound, Unavailable
from service.metrics import ServiceMetrics
from service.middleware import HotCache, RequestGuard
from service.routes.deps import cached_response
from service.settings import ServiceSettings

if TYPE_CHECKING:
    from service.inference import InferenceLoop
    from service.inference_process import InferenceProcess

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_VERSION = "1.0.0"


def _ages(access: DataAccess) -> tuple[float | None, float | None]:
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    try:
        snap = access.snapshot()
    except Unavailable:
        return None, None
    last, run = snap.last_complete, snap.latest_run
    obs_age = (now - last).total_seconds() if last is not None else None
    fc_age = (now - run.init_time).total_seconds() if run is not None else None
    return obs_age, fc_age


#: GET routes whose 200 answers depend only on the URL and the store versions: HotCache may replay them
HOT_ROUTES = frozenset(
    {
        "/v1/tiles/{layer}/{time_key}/{z}/{x}/{y}.png",
        "/v1/maps/{layer}/{time_key}",
        "/v1/point",
        "/v1/frames",
        "/v1/forecasts",
        "/v1/forecasts/latest",
        "/v1/forecasts/{init_time}",
        "/v1/legend/{layer}",
    }
)

#: modules that handlers (xarray/zarr reads, PNG and netCDF encoding) and the inference loop import
#: lazily; importing them in several threads at once has failed (``cannot import name 'annotate'
#: from partially initialized module 'dask.base'``), so create_app imports them first
WARM_MODULES = (
    "dask",
    "dask.base",
    "dask.array",
    "xarray",
    "zarr",
    "pyproj",
    "PIL.Image",
    "PIL.PngImagePlugin",
    "matplotlib.backends.backend_agg",
    "netCDF4",
)
#: imported as well when an inference loop runs in this process (the built-in models use them);
#: not for the proxy of an inference process, so that the API process never loads the models
INFERENCE_MODULES = ("pysteps", "pysteps.motion", "pysteps.extrapolation", "scipy.ndimage")


def warm_imports(names: tuple[str, ...] | list[str]) -> list[str]:
    """Import ``names`` now, in this thread, before any worker thread starts; the names not installed are skipped."""
    done = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.debug("warm import of %s skipped: %s", name, exc)
            continue
        done.append(name)
    return done


def create_app(
    settings: ServiceSettings | None = None,
    inference: InferenceLoop | InferenceProcess | None = None,
    *,
    start_inference: bool = False,
) -> FastAPI:
    """Build the app for ``settings``; ``inference`` (optional) is the loop of this process or the
    proxy of an inference process.

    Heavy modules are imported here, before the loop's thread or the server's worker threads
    start (see WARM_MODULES). ``uvicorn --factory service.app:create_app`` builds an API-only
    app from ``NOWCAST_*`` variables (several workers behind a proxy, see docs/deploy.md).
    """
    settings = settings or ServiceSettings()
    in_process = inference is not None and getattr(inference, "in_process", True)
    warm_imports(WARM_MODULES + (INFERENCE_MODULES if in_process else ()))
    access = DataAccess(settings)
    from service.routes import info, point

    # before anything takes a snapshot (registering the metrics collector does): the first one is warmed too
    access.warmers += [
        partial(info.warm_documents, access, settings),
        partial(point.warm_stacks, access, settings),
        partial(point.warm_series, access, settings),
    ]
    #: responses replayed by HotCache (bounded like the other caches)
    replay: LRUCache[tuple] = LRUCache(max(1024, settings.cache_items * 8), max_bytes=settings.field_cache_mb * 2**20 // 8)
    metrics = ServiceMetrics(
        ages=lambda: _ages(access),
        cache_stats=lambda: (access.responses.hits + replay.hits, access.responses.misses + replay.misses),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        if inference is not None and start_inference:
            inference.start()
        # the heap after imports and start-up (numpy, pandas, xarray, dask, pysteps...) is long-lived:
        # keep it out of the cyclic GC, whose full collections otherwise stall every request in flight
        gc.freeze()
        unwatch_gc = metrics.watch_gc()
        try:
            yield
        finally:
            unwatch_gc()
            gc.unfreeze()
            if inference is not None and start_inference:
                inference.stop()

    app = FastAPI(
        title="nowcast API",
        version=API_VERSION,
        description="Radar rain-rate and lightning nowcasts (5-75 min): observed and forecast frames as maps, "
        "XYZ tiles, point series; service status and metrics. Times are UTC.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.access = access
    app.state.metrics = metrics
    app.state.inference = inference
    app.state.replay = replay
    if inference is not None:
        inference.listeners.append(metrics.observe_forecast)
        inference.listeners.append(lambda _e: metrics.set_model(inference.model_status.active, inference.model_status.version, inference.model_status.fallback))

    def _error(status: int, detail: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status, headers={"Cache-Control": "no-store"})

    @app.exception_handler(NotFound)
    async def _not_found(_r: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(ForecastStoreError)
    async def _fc_missing(_r: Request, exc: ForecastStoreError) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(BadRequest)
    async def _bad(_r: Request, exc: BadRequest) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Unavailable)
    async def _unavailable(_r: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5", "Cache-Control": "no-store"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        from fastapi.encoders import jsonable_encoder

        return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)

    app.add_middleware(
        HotCache,
        access=access,
        templates=HOT_ROUTES,
        entries=replay,
    )
    app.add_middleware(  # outermost: limits and request metrics
        RequestGuard,
        metrics=metrics,
        max_query_bytes=settings.max_query_bytes,
        max_header_bytes=settings.max_header_bytes,
        max_body_bytes=settings.max_body_bytes,
    )

    from service.routes import admin, images, info, overlays, point

    app.include_router(info.router)
    app.include_router(images.router)
    app.include_router(point.router)
    app.include_router(admin.router)
    app.include_router(overlays.router)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    def dashboard(request: Request) -> Response:
        page = STATIC_DIR / "index.html"
        st = page.stat()
        key = ("dashboard", st.st_mtime_ns, st.st_size)
        entry = access.objects.get(key)
        if entry is None:
            entry = CachedBody.of(page.read_bytes(), "text/html; charset=utf-8", st.st_mtime)
            access.objects.put(key, entry)
        return cached_response(request, entry, "no-cache")  # type: ignore[arg-type]

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
