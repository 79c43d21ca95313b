"""The FastAPI application: ``create_app(settings)`` builds a fresh app (no import-time state).

The app serves the v1 API, the Prometheus metrics and the dashboard. Inference does not run
per request: pass an :class:`~service.inference.InferenceLoop` (``nowcast serve`` does) to
expose its status and the admin routes; ``create_app`` only starts/stops that loop with the
app's lifespan when ``start_inference`` is true.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from nowcast.forecast_store import ForecastStoreError
from service.data import BadRequest, DataAccess, NotFound, Unavailable
from service.inference import InferenceLoop
from service.metrics import ServiceMetrics
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_VERSION = "1.0.0"


def _ages(access: DataAccess) -> tuple[float | None, float | None]:
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    obs_age = fc_age = None
    try:
        last = access.obs().last_complete()
        obs_age = (now - last).total_seconds() if last is not None else None
    except Unavailable:
        pass
    fc = access.forecasts()
    run = fc.latest() if fc is not None else None
    if run is not None:
        fc_age = (now - run.init_time).total_seconds()
    return obs_age, fc_age


def create_app(settings: ServiceSettings | None = None, inference: InferenceLoop | None = None, *, start_inference: bool = False) -> FastAPI:
    """Build the app for ``settings``; ``inference`` (optional) is the loop of this process."""
    settings = settings or ServiceSettings()
    access = DataAccess(settings)
    metrics = ServiceMetrics(ages=lambda: _ages(access), cache_stats=lambda: (access.responses.hits, access.responses.misses))

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        if inference is not None and start_inference:
            inference.start()
        try:
            yield
        finally:
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

    @app.middleware("http")
    async def _timing(request: Request, call_next):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.observe_request(template, request.method, response.status_code, time.perf_counter() - t0)
        return response

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
    def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
