"""Time series at a location: observed last hour and forecast 5..75 min.

The series of a grid cell is serialised once per store versions (JSON after the ``lat`` /
``lon`` fields, which echo the query); a request maps lat/lon to the cell on the event loop
and prepends its coordinates to the cached bytes. Only a miss reads the stores, in a worker
thread.
"""

from __future__ import annotations

import json
import math
from functools import partial

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request, Response

from service.cache import CachedBody, etag_of, http_date
from service.data import DataAccess, Snapshot, iso
from service.middleware import REVALIDATE
from service.routes.deps import cached_response, error_responses, replayed, short_cache
from service.schemas import PointResponse
from service.settings import ServiceSettings

router = APIRouter(prefix="/v1", tags=["point"])


def _history_slots(access: DataAccess, settings: ServiceSettings) -> int:
    return int(pd.Timedelta(minutes=settings.point_history_minutes) / access.obs().cadence) + 1


def _stacks(access: DataAccess, settings: ServiceSettings, snap: Snapshot, cached_only: bool = False):  # noqa: ANN202
    """(observed stack or None, forecast stack or None) at ``snap``; ``cached_only``: None for what is
    not in memory (raises KeyError then)."""
    obs_stack = fc_stack = None
    if snap.last_complete is not None:
        args = (pd.Timestamp(snap.last_complete), _history_slots(access, settings), snap.obs_version)
        obs_stack = access.observed_stack_cached(*args) if cached_only else access.observed_stack(*args)
        if obs_stack is None:
            raise KeyError("observed stack")
    if snap.latest_run is not None:
        fc_stack = access.forecast_stack_cached(snap.latest_run) if cached_only else access.forecast_stack(snap.latest_run)
        if fc_stack is None:
            raise KeyError("forecast stack")
    return obs_stack, fc_stack


def _labels(obs_stack, fc_stack, run) -> tuple[list[str], list[int], list[str]]:  # noqa: ANN001
    """(observed times, lead minutes, forecast valid times) of the series: the same for every cell."""
    obs_times = [iso(t) or "" for t in obs_stack[0]] if obs_stack is not None else []
    if fc_stack is None or run is None:
        return obs_times, [], []
    leads = fc_stack[0]
    return obs_times, [int(lead / pd.Timedelta(minutes=1)) for lead in leads], [iso(run.init_time + lead) or "" for lead in leads]


def warm_stacks(access: DataAccess, settings: ServiceSettings, snap: Snapshot) -> None:
    """Read the observed and forecast stacks of the point series at ``snap`` (a :attr:`DataAccess.warmers`
    entry): the first point requests after new data then index into memory instead of queueing behind
    those reads. Skipped when the stacks would take more than half of their cache's budget."""
    budget = (access.stacks.max_bytes or 0) // 2
    cells = int(np.prod(access.grid().shape))
    last, run = snap.last_complete, snap.latest_run
    if last is not None:
        n = _history_slots(access, settings)
        if n * cells * 8 <= budget:
            access.observed_stack(pd.Timestamp(last), n, snap.obs_version)
    if run is not None and len(run.lead_minutes()) * cells * 8 <= budget:
        access.forecast_stack(run)


def series_tail(access: DataAccess, settings: ServiceSettings, snap: Snapshot, row: int, col: int, cached_only: bool = False) -> bytes:
    """The :class:`PointResponse` JSON of cell (row, col) at ``snap`` after its ``lat`` / ``lon``
    members, written directly: byte for byte what the model dumps (tested), ~10x faster than building
    and dumping it (after new data every cell in use is built again). Blocking (store reads) unless
    ``cached_only``: then KeyError when the stacks are not in memory."""
    obs_stack, fc_stack = _stacks(access, settings, snap, cached_only)
    run = snap.latest_run
    obs_times, lead_minutes, valid_times = access.objects.get_or_compute(("point-labels", *snap.versions), lambda: _labels(obs_stack, fc_stack, run))
    observed = ""
    if obs_stack is not None:
        rain, light = (_json_numbers(a[:, row, col]) for a in obs_stack[1:])
        observed = ",".join(f'{{"time":"{t}","rain_rate":{r},"lightning":{g}}}' for t, r, g in zip(obs_times, rain, light, strict=True))
    forecast = ""
    if fc_stack is not None:
        rain, prob = (_json_numbers(a[:, row, col]) for a in fc_stack[1:])
        forecast = ",".join(
            f'{{"lead_minutes":{m},"valid_time":"{v}","rain_rate":{r},"lightning_probability":{p}}}'
            for m, v, r, p in zip(lead_minutes, valid_times, rain, prob, strict=True)
        )
    init = f'"{iso(run.init_time)}"' if run else "null"
    model = json.dumps(run.model, ensure_ascii=False) if run else "null"
    return f'"row":{row},"col":{col},"observed":[{observed}],"forecast_init_time":{init},"model":{model},"forecast":[{forecast}]}}'.encode()


def _json_numbers(values: np.ndarray) -> list[str]:
    """JSON of each value rounded to 4 decimals, as pydantic writes the float (``null`` for NaN / inf)."""
    out = []
    for v in values.tolist():
        if math.isnan(v) or math.isinf(v):
            out.append("null")
        else:
            out.append(repr(round(v, 4)))  # pydantic's float text too (it differs below 1e-4 only: rounded away)
    return out


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
    entry = _from_memory(access, settings, snap, lat, lon, row, col)
    if entry is None:
        key = ("point", *snap.versions, row, col)
        tail = await access.cached(access.points, key, lambda: series_tail(access, settings, snap, row, col))
        entry = _body(snap, lat, lon, tail)
    request.scope[REVALIDATE] = partial(_replay, access, settings, lat, lon, row, col)
    return cached_response(request, entry, short_cache(settings))


def _from_memory(access: DataAccess, settings: ServiceSettings, snap: Snapshot, lat: float, lon: float, row: int, col: int) -> CachedBody | None:
    """The answer for (lat, lon) in cell (row, col) at ``snap`` when the cell's series or the stacks are
    in memory (~0.3 ms: less than a hop to a worker thread costs a saturated loop), else None."""
    key = ("point", *snap.versions, row, col)
    tail = access.points.get(key)
    if tail is None:
        try:
            tail = series_tail(access, settings, snap, row, col, cached_only=True)
        except KeyError:
            return None
        access.points.put(key, tail)
    return _body(snap, lat, lon, tail)


def _body(snap: Snapshot, lat: float, lon: float, tail: bytes) -> CachedBody:
    body = b'{"lat":' + json.dumps(lat).encode() + b',"lon":' + json.dumps(lon).encode() + b"," + tail
    return CachedBody(body, "application/json", etag_of(body), http_date(snap.modified))


def _replay(access: DataAccess, settings: ServiceSettings, lat: float, lon: float, row: int, col: int, snap: Snapshot) -> tuple | None:
    """The answer at ``snap`` built from memory, without the routes (a :data:`REVALIDATE` function), or None."""
    entry = _from_memory(access, settings, snap, lat, lon, row, col)
    return None if entry is None else replayed(cached_response(None, entry, short_cache(settings)))
