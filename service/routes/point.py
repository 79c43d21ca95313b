"""Time series at a location: observed last hour and forecast 5..75 min.

The series of a grid cell is serialised once per store versions (JSON after the ``lat`` /
``lon`` fields, which echo the query); a request maps lat/lon to the cell on the event loop
and prepends its coordinates to the cached bytes. Only a miss reads the stores, in a worker
thread.
"""

from __future__ import annotations

import json
import math

import pandas as pd
from fastapi import APIRouter, Query, Request, Response

from service.cache import CachedBody, etag_of, http_date
from service.data import DataAccess, Snapshot, iso
from service.routes.deps import cached_response, error_responses, short_cache
from service.schemas import ForecastPoint, ObservedPoint, PointResponse
from service.settings import ServiceSettings

router = APIRouter(prefix="/v1", tags=["point"])


def _num(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else round(v, 4)


def point_series(access: DataAccess, settings: ServiceSettings, snap: Snapshot, row: int, col: int) -> PointResponse:
    """The series of cell (row, col) at ``snap`` (lat/lon left 0: the handler fills them in). Blocking."""
    observed: list[ObservedPoint] = []
    last = snap.last_complete
    if last is not None:
        obs = access.obs()
        n = int(pd.Timedelta(minutes=settings.point_history_minutes) / obs.cadence) + 1
        times, rain, light = access.observed_stack(pd.Timestamp(last), n, snap.obs_version)
        for i, t in enumerate(times):
            observed.append(ObservedPoint(time=iso(t) or "", rain_rate=_num(rain[i, row, col]), lightning=_num(light[i, row, col])))
    forecast: list[ForecastPoint] = []
    run = snap.latest_run
    if run is not None:
        leads, frain, fprob = access.forecast_stack(run)
        for i, lead in enumerate(leads):
            forecast.append(
                ForecastPoint(
                    lead_minutes=int(lead / pd.Timedelta(minutes=1)),
                    valid_time=iso(run.init_time + lead) or "",
                    rain_rate=_num(frain[i, row, col]),
                    lightning_probability=_num(fprob[i, row, col]),
                )
            )
    return PointResponse(
        lat=0.0,
        lon=0.0,
        row=row,
        col=col,
        observed=observed,
        forecast_init_time=iso(run.init_time) if run else None,
        model=run.model if run else None,
        forecast=forecast,
    )


def _tail(doc: PointResponse) -> bytes:
    """The JSON of ``doc`` after its leading ``lat`` and ``lon`` members (``"row":...}``)."""
    raw = doc.model_dump_json().encode()
    head = b'{"lat":0.0,"lon":0.0,'
    assert raw.startswith(head), raw[:40]
    return raw[len(head) :]


@router.get(
    "/point",
    response_model=PointResponse,
    responses={304: {"description": "not modified (If-None-Match matched)"}, **error_responses(404, 503)},
    summary="Rain rate and lightning at a location: observed last hour plus the latest forecast",
)
async def get_point(
    request: Request,
    lat: float = Query(ge=-90, le=90, description="latitude, degrees north (WGS 84)"),
    lon: float = Query(ge=-180, le=180, description="longitude, degrees east (WGS 84)"),
) -> Response:
    access: DataAccess = request.app.state.access
    settings: ServiceSettings = request.app.state.settings
    snap = await access.snapshot_async()
    row, col = access.point_index(lat, lon)
    tail = await access.cached(
        access.points, ("point", *snap.versions, row, col), lambda: _tail(point_series(access, settings, snap, row, col))
    )
    body = b'{"lat":' + json.dumps(lat).encode() + b',"lon":' + json.dumps(lon).encode() + b"," + tail
    entry = CachedBody(body, "application/json", etag_of(body), http_date(snap.modified))
    return cached_response(request, entry, short_cache(settings))
