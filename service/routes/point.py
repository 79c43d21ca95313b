"""Time series at a location: observed last hour and forecast 5..75 min."""

from __future__ import annotations

import math

import pandas as pd
from fastapi import APIRouter, Query, Response

from service.data import iso
from service.routes.deps import Access, Settings, error_responses, short_cache
from service.schemas import ForecastPoint, ObservedPoint, PointResponse

router = APIRouter(prefix="/v1", tags=["point"])


def _num(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else round(v, 4)


@router.get(
    "/point",
    response_model=PointResponse,
    responses=error_responses(404, 503),
    summary="Rain rate and lightning at a location: observed last hour plus the latest forecast",
)
def get_point(
    response: Response,
    access: Access,
    settings: Settings,
    lat: float = Query(ge=-90, le=90, description="latitude, degrees north (WGS 84)"),
    lon: float = Query(ge=-180, le=180, description="longitude, degrees east (WGS 84)"),
) -> PointResponse:
    row, col = access.point_index(lat, lon)
    obs = access.obs()
    obs_v, fc_v = access.versions()
    cache_key = ("point", obs_v, fc_v, row, col)
    cached = access.points.get(cache_key)
    if cached is None:
        observed: list[ObservedPoint] = []
        last = obs.last_complete()
        if last is not None:
            n = int(pd.Timedelta(minutes=settings.point_history_minutes) / obs.cadence) + 1
            times, rain, light = access.observed_stack(pd.Timestamp(last), n)
            for i, t in enumerate(times):
                observed.append(ObservedPoint(time=iso(t) or "", rain_rate=_num(rain[i, row, col]), lightning=_num(light[i, row, col])))
        forecast: list[ForecastPoint] = []
        fc = access.forecasts()
        run = fc.latest() if fc is not None else None
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
        cached = PointResponse(
            lat=lat,
            lon=lon,
            row=row,
            col=col,
            observed=observed,
            forecast_init_time=iso(run.init_time) if run else None,
            model=run.model if run else None,
            forecast=forecast,
        )
        access.points.put(cache_key, cached)
    response.headers["Cache-Control"] = short_cache(settings)
    return cached.model_copy(update={"lat": lat, "lon": lon})
