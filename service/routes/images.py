"""Map images (PNG / netCDF), XYZ tiles and legends."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from nowcast import plotting
from service import maps
from service.data import FrameRef
from service.routes.deps import IMMUTABLE, Access, Settings, error_responses, short_cache
from service.schemas import Legend, LegendEntry
from service.tiles import TileError, check_tile

router = APIRouter(prefix="/v1", tags=["images"])


class Layer(StrEnum):
    rain = "rain"
    lightning = "lightning"


class MapFormat(StrEnum):
    png = "png"
    nc = "nc"


TIME_KEY_DOC = "YYYYmmddTHHMM (observed), YYYYmmddTHHMM+LEAD (forecast lead, minutes), latest or latest+LEAD"


def _cache_header(ref: FrameRef, settings) -> str:  # noqa: ANN001
    return IMMUTABLE if ref.immutable else short_cache(settings)


@router.get(
    "/maps/{layer}/{time_key}",
    responses={
        200: {"content": {"image/png": {}, "application/x-netcdf": {}}, "description": "PNG map or netCDF file"},
        **error_responses(400, 404, 503),
    },
    response_class=Response,
    summary="Whole-grid map of an observed frame or forecast lead (PNG with legend), or its data as netCDF",
)
def get_map(
    access: Access,
    settings: Settings,
    layer: Layer,
    time_key: str = Path(description=TIME_KEY_DOC, max_length=40, examples=["latest", "latest+15"]),
    format: Annotated[MapFormat, Query(description="png (map image) or nc (netCDF data)")] = MapFormat.png,  # noqa: A002
) -> Response:
    ref = access.resolve(time_key)
    obs_v, fc_v = access.versions()
    version = fc_v if ref.is_forecast else obs_v
    if format is MapFormat.nc:
        body = access.responses.get_or_compute(("nc", version, ref.key), lambda: maps.to_netcdf_bytes(access, ref))
        media = "application/x-netcdf"
        disposition = {"Content-Disposition": f'attachment; filename="nowcast_{ref.key.replace("+", "_")}.nc"'}
    else:
        body = access.responses.get_or_compute(("map", version, ref.key, layer.value), lambda: maps.render_png(access, ref, layer.value))
        media = "image/png"
        disposition = {}
    return Response(body, media_type=media, headers={"Cache-Control": _cache_header(ref, settings), **disposition})


@router.get(
    "/tiles/{layer}/{time_key}/{z}/{x}/{y}.png",
    responses={200: {"content": {"image/png": {}}, "description": "256x256 RGBA PNG"}, **error_responses(400, 404, 503)},
    response_class=Response,
    summary="XYZ Web Mercator tile; transparent where dry or not covered",
)
def get_tile(
    access: Access,
    settings: Settings,
    layer: Layer,
    time_key: str = Path(description=TIME_KEY_DOC, max_length=40, examples=["latest", "latest+15"]),
    z: int = Path(ge=0, le=30, description="zoom"),
    x: int = Path(ge=0, le=2**30, description="tile column (east)"),
    y: int = Path(ge=0, le=2**30, description="tile row (south)"),
) -> Response:
    try:
        check_tile(z, x, y, settings.min_zoom, settings.max_zoom)
    except TileError as exc:
        from service.data import NotFound

        raise NotFound(str(exc)) from exc
    ref = access.resolve(time_key)
    obs_v, fc_v = access.versions()
    version = fc_v if ref.is_forecast else obs_v
    body = access.responses.get_or_compute(
        ("tile", version, ref.key, layer.value, z, x, y), lambda: maps.render_tile(access, ref, layer.value, z, x, y)
    )
    return Response(body, media_type="image/png", headers={"Cache-Control": _cache_header(ref, settings)})


@router.get("/legend/{layer}", response_model=Legend, summary="Colour scale of a layer (discrete levels)")
def get_legend(response: Response, layer: Layer) -> Legend:
    scale = plotting.get_scale(layer.value)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return Legend(
        layer=layer.value,
        label=scale.label,
        units=scale.units,
        entries=[LegendEntry(**e) for e in scale.legend()],  # type: ignore[arg-type]
    )
