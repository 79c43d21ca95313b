"""Map images (PNG / netCDF), XYZ tiles and legends.

The handlers are ``async``: a cached tile or map is answered on the event loop from its bytes
(no thread hop, no store call beyond the snapshot's change stamp); a miss is rendered once in
a worker thread (concurrent requests for the same new tile share that render).
"""

from __future__ import annotations

from enum import StrEnum
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from nowcast import plotting
from service import maps
from service.cache import CachedBody
from service.data import (
    TIME_KEY_HELP,
    TIME_KEY_PATTERN,
    BadRequest,
    DataAccess,
    FrameRef,
    NotFound,
    Snapshot,
)
from service.middleware import REVALIDATE
from service.routes.deps import (
    IMMUTABLE,
    cached_response,
    error_responses,
    json_body,
    replayed,
    short_cache,
)
from service.schemas import Legend, LegendEntry
from service.settings import ServiceSettings
from service.tiles import TileError, check_tile

router = APIRouter(prefix="/v1", tags=["images"])


class Layer(StrEnum):
    rain = "rain"
    lightning = "lightning"


class MapFormat(StrEnum):
    png = "png"
    nc = "nc"


TIME_KEY_DOC = TIME_KEY_HELP
#: the time key path parameter: the pattern is documented in OpenAPI; a key that does not match
#: gets a 400 naming the expected format (see DataAccess.resolve)
TimeKey = Annotated[
    str,
    Path(description=TIME_KEY_DOC, max_length=40, examples=["latest", "latest+15"], json_schema_extra={"pattern": TIME_KEY_PATTERN}),
]


def _cache_header(ref: FrameRef, settings: ServiceSettings) -> str:
    return IMMUTABLE if ref.immutable else short_cache(settings)


def _unchanged(access: DataAccess, time_key: str, layer: str, shown: str, version: str, response: Response, snap: Snapshot) -> tuple | None:
    """``response`` (an image of frame ``shown`` at content ``version``) when ``time_key`` still shows
    that content at ``snap``, else None (a :data:`REVALIDATE` function: a new frame or run leaves the
    replayed tiles of the other frames valid without routing them again)."""
    try:
        ref = access.resolve_cached(time_key, snap)
    except (NotFound, BadRequest):
        return None
    if ref is None or ref.key != shown or snap.content_version(ref, layer) != version:
        return None
    return replayed(response)


@router.get(
    "/maps/{layer}/{time_key}",
    responses={
        200: {"content": {"image/png": {}, "application/x-netcdf": {}}, "description": "PNG map or netCDF file"},
        304: {"description": "not modified (If-None-Match / If-Modified-Since matched)"},
        **error_responses(400, 404, 503),
    },
    response_class=Response,
    summary="Whole-grid map of an observed frame or forecast lead (PNG with legend), or its data as netCDF",
)
async def get_map(
    request: Request,
    layer: Layer,
    time_key: TimeKey,
    format: Annotated[MapFormat, Query(description="png (map image) or nc (netCDF data)")] = MapFormat.png,  # noqa: A002
) -> Response:
    access = request.app.state.access
    snap = await access.snapshot_async()
    ref = await access.resolve_async(time_key, snap)
    modified = snap.modified_of(ref)
    if format is MapFormat.nc:
        entry = await access.cached(
            access.responses, ("nc", snap.content_version(ref), ref.key), lambda: CachedBody.of(maps.to_netcdf_bytes(access, ref), "application/x-netcdf", modified)
        )
        extra = {"Content-Disposition": f'attachment; filename="nowcast_{ref.key.replace("+", "_")}.nc"'}
    else:
        version = snap.content_version(ref, layer.value)
        entry = await access.cached(
            access.responses,
            ("map", version, ref.key, layer.value),
            lambda: CachedBody.of(maps.render_png(access, ref, layer.value, version), "image/png", modified),
        )
        extra = None
    return cached_response(request, entry, _cache_header(ref, request.app.state.settings), extra)


@router.get(
    "/tiles/{layer}/{time_key}/{z}/{x}/{y}.png",
    responses={
        200: {"content": {"image/png": {}}, "description": "256x256 RGBA PNG"},
        304: {"description": "not modified (If-None-Match / If-Modified-Since matched)"},
        **error_responses(400, 404, 503),
    },
    response_class=Response,
    summary="XYZ Web Mercator tile; transparent where dry or not covered",
)
async def get_tile(
    request: Request,
    layer: Layer,
    time_key: TimeKey,
    z: int = Path(ge=0, le=30, description="zoom"),
    x: int = Path(ge=0, le=2**30, description="tile column (east)"),
    y: int = Path(ge=0, le=2**30, description="tile row (south)"),
) -> Response:
    settings = request.app.state.settings
    try:
        check_tile(z, x, y, settings.min_zoom, settings.max_zoom)
    except TileError as exc:
        raise NotFound(str(exc)) from exc
    access = request.app.state.access
    snap = await access.snapshot_async()
    ref = await access.resolve_async(time_key, snap)
    version = snap.content_version(ref, layer.value)
    key = ("tile", version, ref.key, layer.value, z, x, y)
    entry = access.responses.get(key)
    if entry is None:
        modified = snap.modified_of(ref)

        def render() -> CachedBody:
            return CachedBody.of(maps.render_tile(access, ref, layer.value, z, x, y, version), "image/png", modified)

        entry = await access.cached(access.responses, key, render)
    response = cached_response(request, entry, _cache_header(ref, settings))
    request.scope[REVALIDATE] = partial(_unchanged, access, time_key, layer.value, ref.key, version, response)
    return response


@router.get(
    "/legend/{layer}",
    response_model=Legend,
    responses={304: {"description": "not modified"}},
    summary="Colour scale of a layer (discrete levels)",
)
async def get_legend(request: Request, layer: Layer) -> Response:
    access = request.app.state.access

    def build() -> CachedBody:
        scale = plotting.get_scale(layer.value)
        legend = Legend(layer=layer.value, label=scale.label, units=scale.units, entries=[LegendEntry(**e) for e in scale.legend()])  # type: ignore[arg-type]
        return json_body(legend)

    entry = access.objects.get(("legend", layer.value))
    if entry is None:
        entry = build()
        access.objects.put(("legend", layer.value), entry)
    return cached_response(request, entry, "public, max-age=86400")
