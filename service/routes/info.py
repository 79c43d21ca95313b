"""Status, frame index and forecast metadata routes.

The index and metadata documents are serialised once per store version (JSON bytes with an
ETag) and served by ``async`` handlers; only a version change builds them again, in a worker
thread.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Path, Request, Response

from nowcast import dims
from nowcast.forecast_store import RunInfo
from service.cache import CachedBody
from service.data import (
    BadRequest,
    DataAccess,
    NotFound,
    Snapshot,
    Unavailable,
    iso,
    posix_seconds,
    time_key,
)
from service.routes.deps import (
    IMMUTABLE,
    Access,
    cached_response,
    error_responses,
    json_body,
    short_cache,
)
from service.schemas import (
    ForecastList,
    ForecastMeta,
    ForecastStatus,
    FrameEntry,
    FramesResponse,
    GridInfo,
    LayerLinks,
    ModelInfo,
    ObservationStatus,
    StatusResponse,
)
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["info"])


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def frame_entry(key: str, valid: pd.Timestamp, lead: int | None) -> FrameEntry:
    return FrameEntry(
        key=key,
        kind="forecast" if lead is not None else "observed",
        valid_time=iso(valid) or "",
        lead_minutes=lead,
        tiles=LayerLinks(**{layer: f"/v1/tiles/{layer}/{key}/{{z}}/{{x}}/{{y}}.png" for layer in ("rain", "lightning")}),
        maps=LayerLinks(**{layer: f"/v1/maps/{layer}/{key}" for layer in ("rain", "lightning")}),
    )


def model_info(request: Request) -> ModelInfo | None:
    loop = getattr(request.app.state, "inference", None)
    if loop is None:
        return None
    ms = loop.model_status
    return ModelInfo(
        configured=ms.configured,
        active=ms.active,
        version=ms.version,
        checkpoint=ms.checkpoint,
        fallback=ms.fallback,
        message=ms.message,
        inference_running=loop.status.running,
        last_error=loop.status.last_error,
        registry_version=ms.registry_version,
        alert=ms.alert,
        card_url="/v1/model/card" if ms.card else None,
        lightning_probability=(ms.card or {}).get("lightning_probability"),
    )


def read_ingest(access: DataAccess) -> dict[str, Any] | None:
    """Ingest health from the store state via ingest.read_ingest_status, when available."""
    try:
        from ingest import read_ingest_status  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        status = read_ingest_status(access.obs())
    except Exception as exc:  # ingest status is advisory; never fail /v1/status for it
        log.debug("ingest status unavailable: %s", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    if status is None:
        return None
    if hasattr(status, "model_dump"):
        status = status.model_dump(mode="json")
    elif not isinstance(status, dict):
        status = dict(vars(status))
    return _jsonable(status)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return iso(value)
    if isinstance(value, float) and value != value:
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@router.get("/status", response_model=StatusResponse, summary="Service health: data age, last forecast, model, ingest")
def get_status(request: Request, access: Access) -> Response:
    now = _now()
    messages: list[str] = []
    obs_status = None
    fc_status = None
    run = None
    try:
        snap = access.snapshot()
        last, run = snap.last_complete, snap.latest_run
        obs_status = ObservationStatus(
            last_frame=iso(last),
            age_seconds=(now - last).total_seconds() if last is not None else None,
            frames=len(snap.obs_times),
            store_version=snap.obs_version,
        )
    except Unavailable as exc:
        messages.append(str(exc))
    if run is not None:
        fc_status = ForecastStatus(
            init_time=iso(run.init_time) or "",
            age_seconds=(now - run.init_time).total_seconds(),
            model=run.model,
            model_version=run.model_version,
            written_at=iso(run.written_at) or "",
            compute_seconds=None if run.compute_seconds != run.compute_seconds else run.compute_seconds,
        )
    else:
        messages.append("no forecast yet")
    model = model_info(request)
    if model is not None and model.fallback:
        messages.append(model.message)
    if model is not None and model.alert:
        messages.append(model.alert)
    if model is not None and model.last_error:
        messages.append(f"last forecast failed: {model.last_error}")
    ingest = read_ingest(access) if obs_status is not None else None
    if obs_status is None or fc_status is None:
        state = "starting"
    elif (model is not None and (model.fallback or model.last_error or model.alert)) or (
        obs_status.age_seconds is not None and obs_status.age_seconds > 3 * 3600
    ):
        state = "degraded"
    else:
        state = "ok"
    body = StatusResponse(
        status=state,
        now=iso(now) or "",
        observations=obs_status,
        forecast=fc_status,
        model=model,
        ingest=ingest,
        messages=messages,
    )
    return cached_response(request, json_body(body), "no-cache")


@router.get(
    "/model/card",
    summary="Model card of the serving weights: data, training, calibration, held-out scores",
    responses=error_responses(404),
)
def get_model_card(request: Request) -> Response:
    loop = getattr(request.app.state, "inference", None)
    card = loop.model_status.card if loop is not None else None
    if not card:
        raise NotFound("the serving model has no model card (extrapolation and other baselines have none)")
    import json

    return cached_response(request, CachedBody.of(json.dumps(card, default=str).encode(), "application/json"), "no-cache")


NOT_MODIFIED = {304: {"description": "not modified (If-None-Match / If-Modified-Since matched)"}}


@router.get(
    "/frames",
    response_model=FramesResponse,
    responses={**NOT_MODIFIED, **error_responses(503)},
    summary="Index of observed and forecast frames with immutable tile/map URLs",
)
async def get_frames(request: Request) -> Response:
    access: DataAccess = request.app.state.access
    settings: ServiceSettings = request.app.state.settings
    snap = await access.snapshot_async()
    entry = await access.cached(access.objects, ("frames", *snap.versions), lambda: json_body(_build_frames(access, settings, snap), snap.modified))
    return cached_response(request, entry, short_cache(settings))  # type: ignore[arg-type]


def warm_documents(access: DataAccess, settings: ServiceSettings, snap: Snapshot) -> None:
    """Build the frame index and the newest run's metadata at ``snap`` into their caches.

    Called by the refresh that found new data, before requests see ``snap`` (a
    :attr:`DataAccess.warmers` entry): the burst of dashboard requests after a new frame then
    finds them built instead of waiting for the first of them to build them.
    """
    key: tuple = ("frames", *snap.versions)
    if key not in access.objects:
        access.objects.put(key, json_body(_build_frames(access, settings, snap), snap.modified))
    run = snap.latest_run
    if run is not None and (key := _meta_key(run)) not in access.objects:
        access.objects.put(key, json_body(forecast_meta(access, run), posix_seconds(run.written_at)))


def _build_frames(access: DataAccess, settings: ServiceSettings, snap: Snapshot) -> FramesResponse:
    """The frame index at ``snap``.

    ``generated_at`` is the last change of either store (``snap.modified``), not the wall clock: every
    worker of a multi-worker deployment then builds the same bytes, hence the same ETag, for one state.
    """
    times = snap.obs_times[-settings.frames_in_index :]
    observed = [frame_entry(time_key(t), t, None) for t in times]
    run = snap.latest_run
    forecast: list[FrameEntry] = []
    if run is not None:
        forecast = [
            frame_entry(time_key(run.init_time, m), run.init_time + pd.Timedelta(minutes=m), m) for m in run.lead_minutes()
        ]
    return FramesResponse(
        generated_at=iso(pd.Timestamp(snap.modified, unit="s", tz="UTC")) or "",
        observed=observed,
        forecast=forecast,
        forecast_init_time=iso(run.init_time) if run else None,
        model=run.model if run else None,
        bbox_lonlat=access.bbox_lonlat(),
        max_age_seconds=settings.index_max_age_s,
    )


def grid_info(access: DataAccess) -> GridInfo:
    grid = access.grid()
    auth = grid.crs.to_authority()
    return GridInfo(
        shape=list(grid.shape),
        resolution=grid.resolution,
        bounds=[float(b) for b in grid.bounds()],
        bbox_lonlat=access.bbox_lonlat(),
        crs=":".join(auth) if auth else grid.crs.to_string(),
        crs_wkt=grid.crs_wkt,
    )


def _meta_key(run: RunInfo) -> tuple:
    return ("forecast-meta", run.key, run.written_at)


def forecast_meta(access: DataAccess, run: RunInfo) -> ForecastMeta:
    leads = run.lead_minutes()
    return ForecastMeta(
        init_time=iso(run.init_time) or "",
        key=time_key(run.init_time),
        lead_minutes=leads,
        valid_times=[iso(run.init_time + pd.Timedelta(minutes=m)) or "" for m in leads],
        model=run.model,
        model_version=run.model_version,
        written_at=iso(run.written_at) or "",
        compute_seconds=None if run.compute_seconds != run.compute_seconds else run.compute_seconds,
        grid=grid_info(access),
        variables={dims.RAIN_RATE: dims.RAIN_RATE_UNITS, dims.LIGHTNING_PROBABILITY: dims.PROBABILITY_UNITS},
        frames=[frame_entry(time_key(run.init_time, m), run.init_time + pd.Timedelta(minutes=m), m) for m in leads],
    )


@router.get("/forecasts", response_model=ForecastList, responses=NOT_MODIFIED, summary="Init times of the retained forecast runs")
async def list_forecasts(request: Request) -> Response:
    access: DataAccess = request.app.state.access
    snap = await access.snapshot_async()

    def build() -> CachedBody:
        fc = access.forecasts()
        times = list(fc.init_times()) if fc is not None else []
        doc = ForecastList(init_times=[iso(t) or "" for t in times], latest=iso(times[-1]) if times else None)
        return json_body(doc, snap.modified)

    entry = await access.cached(access.objects, ("forecast-list", snap.fc_version), build)
    return cached_response(request, entry, short_cache(request.app.state.settings))  # type: ignore[arg-type]


@router.get(
    "/forecasts/latest",
    response_model=ForecastMeta,
    responses={**NOT_MODIFIED, **error_responses(404, 503)},
    summary="Metadata of the newest forecast run: leads, grid, bbox, CRS, model",
)
async def latest_forecast(request: Request) -> Response:
    access: DataAccess = request.app.state.access
    snap = await access.snapshot_async()
    run = snap.latest_run
    if run is None:
        raise NotFound("no forecast yet")
    entry = await access.cached(access.objects, _meta_key(run), lambda: json_body(forecast_meta(access, run), posix_seconds(run.written_at)))
    return cached_response(request, entry, short_cache(request.app.state.settings))  # type: ignore[arg-type]


_INIT_RE = re.compile(r"^\d{8}T\d{4}(\d{2})?Z?$")
INIT_TIME_HELP = "YYYYmmddTHHMM[SS][Z] (e.g. 20250601T1200) or ISO 8601 in UTC (e.g. 2025-06-01T12:00:00Z), years 1900-2199"
#: OpenAPI pattern of init times (a real date is checked by the handler: 400 otherwise)
INIT_TIME_PATTERN = (
    r"^(?:(?:19|20|21)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3])[0-5]\d(?:[0-5]\d)?Z?"
    r"|(?:19|20|21)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?)$"
)
_INIT_STRICT = re.compile(INIT_TIME_PATTERN)


def parse_init_time(text: str) -> pd.Timestamp:
    """``YYYYmmddTHHMM[SS][Z]`` or ISO 8601 (UTC) -> Timestamp; BadRequest when malformed."""
    try:
        if not _INIT_STRICT.match(text):
            raise ValueError("pattern")
        if _INIT_RE.match(text):
            t = pd.Timestamp(pd.to_datetime(text.rstrip("Z"), format="%Y%m%dT%H%M%S" if len(text.rstrip("Z")) == 15 else "%Y%m%dT%H%M"))
        else:
            if not re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$", text):
                raise ValueError("not an ISO 8601 date-time")
            t = dims.to_utc_timestamp(pd.Timestamp(text))
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(f"malformed init time {text!r}: use {INIT_TIME_HELP}") from None
    return t


@router.get(
    "/forecasts/{init_time}",
    response_model=ForecastMeta,
    responses={**NOT_MODIFIED, **error_responses(400, 404, 503)},
    summary="Metadata of the forecast run initialised at init_time (YYYYmmddTHHMM or ISO 8601)",
)
async def forecast_by_time(
    request: Request,
    init_time: Annotated[str, Path(description=INIT_TIME_HELP, max_length=40, json_schema_extra={"pattern": INIT_TIME_PATTERN})],
) -> Response:
    access: DataAccess = request.app.state.access
    t = parse_init_time(init_time)
    snap = await access.snapshot_async()

    def build() -> CachedBody:
        run = access.run_info_at(t)
        return json_body(forecast_meta(access, run), posix_seconds(run.written_at))

    entry = await access.cached(access.objects, ("forecast-meta-at", snap.fc_version, t), build)
    return cached_response(request, entry, IMMUTABLE)  # type: ignore[arg-type]
