"""Time series at a location: observed last hour and forecast 5..75 min.

The series of a grid cell is serialised once per store versions (JSON after the ``lat`` /
``lon`` fields, which echo the query); a request maps lat/lon to the cell on the event loop
and prepends its coordinates to the cached bytes. Only a miss reads the stores, in a worker
thread. Its observed and forecast parts are cached apart, each per version of its own store,
and after new data the refresh builds the series of the cells in use before requests see the
new data (:func:`warm_series`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from functools import cached_property, partial

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request, Response

from service.cache import CachedBody, etag_of, http_date
from service.data import DataAccess, Snapshot, iso, yield_to_requests
from service.middleware import REVALIDATE
from service.routes.deps import cached_response, error_responses, replayed, short_cache
from service.schemas import PointResponse
from service.settings import ServiceSettings

router = APIRouter(prefix="/v1", tags=["point"])

#: cells whose series :func:`warm_series` builds after new data (the most recently requested)
PREBUILT_CELLS = 4096
#: cells built between two yields of the GIL
PREBUILD_BATCH = 32


def _history_slots(access: DataAccess, settings: ServiceSettings) -> int:
    return int(pd.Timedelta(minutes=settings.point_history_minutes) / access.obs().cadence) + 1


def _stacks(access: DataAccess, settings: ServiceSettings, snap: Snapshot, cached_only: bool = False, slots: int | None = None):  # noqa: ANN202
    """(observed stack or None, forecast stack or None) at ``snap``; ``cached_only``: None for what is
    not in memory (raises KeyError then). ``slots``: the observed history's length when known."""
    obs_stack = fc_stack = None
    if snap.last_complete is not None:
        args = (pd.Timestamp(snap.last_complete), slots if slots is not None else _history_slots(access, settings), snap.obs_version)
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


@dataclass(frozen=True)
class _SeriesLabels:
    """What the series of every cell share at one snapshot (JSON text): the observed times, the
    lead minutes and valid times, the run's init time and model; and the observed slots."""

    slots: int
    obs_times: list[str]
    lead_minutes: list[int]
    valid_times: list[str]
    init: str
    model: str

    @cached_property
    def observed_template(self) -> str:
        """The ``observed`` entries as a %-template of (rain, lightning) numbers, entry by entry."""
        return ",".join(f'{{"time":"{_pct(t)}","rain_rate":%s,"lightning":%s}}' for t in self.obs_times)

    @cached_property
    def forecast_template(self) -> str:
        """The ``forecast`` entries as a %-template of (rain, probability) numbers, lead by lead."""
        return ",".join(
            f'{{"lead_minutes":{m},"valid_time":"{_pct(v)}","rain_rate":%s,"lightning_probability":%s}}'
            for m, v in zip(self.lead_minutes, self.valid_times, strict=True)
        )


def _series_labels(slots: int, snap: Snapshot, obs_stack, fc_stack) -> _SeriesLabels:  # noqa: ANN001
    run = snap.latest_run
    obs_times, lead_minutes, valid_times = _labels(obs_stack, fc_stack, run)
    return _SeriesLabels(
        slots=slots,
        obs_times=obs_times,
        lead_minutes=lead_minutes,
        valid_times=valid_times,
        init=f'"{iso(run.init_time)}"' if run else "null",
        model=json.dumps(run.model, ensure_ascii=False) if run else "null",
    )


def _shared(access: DataAccess, settings: ServiceSettings, snap: Snapshot, cached_only: bool):  # noqa: ANN202
    """(labels, observed stack, forecast stack) at ``snap``: the labels once per store versions
    (no stacks are kept with them), the stacks from their cache (read unless ``cached_only``)."""
    labels = access.objects.get(("point-labels", *snap.versions))
    if labels is not None:
        return (labels, *_stacks(access, settings, snap, cached_only, labels.slots))
    slots = _history_slots(access, settings)
    obs_stack, fc_stack = _stacks(access, settings, snap, cached_only, slots)
    labels = _series_labels(slots, snap, obs_stack, fc_stack)
    access.objects.put(("point-labels", *snap.versions), labels)
    return labels, obs_stack, fc_stack


def series_tail(access: DataAccess, settings: ServiceSettings, snap: Snapshot, row: int, col: int, cached_only: bool = False) -> bytes:
    """The :class:`PointResponse` JSON of cell (row, col) at ``snap`` after its ``lat`` / ``lon``
    members, written directly: byte for byte what the model dumps (tested), ~10x faster than building
    and dumping it (after new data every cell in use is built again). The observed and forecast
    parts are cached apart, per version of their own store: a new run rebuilds only the forecast
    part of a cell, a new frame only the observed part. Blocking (store reads) unless
    ``cached_only``: then KeyError when the stacks are not in memory."""
    labels, obs_stack, fc_stack = _shared(access, settings, snap, cached_only)
    observed = b""
    if obs_stack is not None:
        key = ("point-obs", snap.obs_version, row, col)
        observed = access.points.get(key)
        if observed is None:
            observed = _filled(labels.observed_template, obs_stack[1][:, row, col], obs_stack[2][:, row, col])
            access.points.put(key, observed)
    forecast = b""
    if fc_stack is not None:
        key = ("point-fc", snap.fc_version, row, col)
        forecast = access.points.get(key)
        if forecast is None:
            forecast = _filled(labels.forecast_template, fc_stack[1][:, row, col], fc_stack[2][:, row, col])
            access.points.put(key, forecast)
    return b"".join((
        f'"row":{row},"col":{col},"observed":['.encode(), observed,
        f'],"forecast_init_time":{labels.init},"model":{labels.model},"forecast":['.encode(), forecast, b"]}",
    ))


def warm_series(access: DataAccess, settings: ServiceSettings, snap: Snapshot) -> None:
    """Build at ``snap`` the series of the cells last requested under older store versions (a
    :attr:`DataAccess.warmers` entry, after :func:`warm_stacks`), newest first, at most
    ``PREBUILT_CELLS``: after new data every point URL in use needs its series again, and built
    here, before requests see ``snap``, it is not built in the burst of those requests on the
    event loop. Yields the GIL between batches (``background_share``); stops early when the
    stacks are not in memory (the requests then build what they need)."""
    cells: dict[tuple[int, int], None] = {}
    for key in reversed(access.points.keys()):
        if key[0] == "point" and key[1:3] != snap.versions:
            cells.setdefault(key[3:5], None)
            if len(cells) >= PREBUILT_CELLS:
                break
    todo = [c for c in cells if ("point", *snap.versions, *c) not in access.points]
    for i in range(0, len(todo), PREBUILD_BATCH):
        t0 = time.perf_counter()
        for row, col in todo[i : i + PREBUILD_BATCH]:
            try:
                access.points.put(("point", *snap.versions, row, col), series_tail(access, settings, snap, row, col, cached_only=True))
            except KeyError:
                return
        yield_to_requests(time.perf_counter() - t0, settings.background_share)


def _pct(text: str) -> str:
    """``text`` inside a %-template."""
    return text.replace("%", "%%")


def _filled(template: str, first: np.ndarray, second: np.ndarray) -> bytes:
    """``template`` (entries of two %s each) filled with the JSON numbers of ``first`` and
    ``second`` (one value per entry), interleaved."""
    numbers = [None] * (2 * len(first))
    numbers[::2], numbers[1::2] = _json_numbers(first), _json_numbers(second)
    return (template % tuple(numbers)).encode()


def _json_numbers(values: np.ndarray) -> list[str]:
    """JSON of each value rounded to 4 decimals, as pydantic writes the float (``null`` for NaN / inf)."""
    if np.isfinite(values).all():  # the usual case: no test per value
        return [repr(round(v, 4)) for v in values.tolist()]
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
