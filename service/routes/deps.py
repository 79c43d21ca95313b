"""Shared route dependencies: typed accessors of the app state, cache headers and conditional responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Response

from service.cache import CachedBody, not_modified
from service.data import DataAccess
from service.settings import ServiceSettings

IMMUTABLE = "public, max-age=31536000, immutable"

#: responses declared by every data route (besides 200 and FastAPI's 422)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed parameter", "model": None},
    404: {"description": "not found (unknown time, lead, or outside the domain)", "model": None},
    503: {"description": "stores not ready yet (service starting)", "model": None},
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    from service.schemas import ErrorResponse

    return {c: {"description": ERRORS[c]["description"], "model": ErrorResponse} for c in codes}


def get_access(request: Request) -> DataAccess:
    return request.app.state.access


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def short_cache(settings: ServiceSettings) -> str:
    return f"public, max-age={settings.index_max_age_s}"


Access = Annotated[DataAccess, Depends(get_access)]
Settings = Annotated[ServiceSettings, Depends(get_settings)]


def cached_response(request: Request | None, entry: CachedBody, cache_control: str, headers: dict[str, str] | None = None) -> Response:
    """``entry`` with its validators (ETag, Last-Modified); 304 without a body when the request's
    validators match (``request`` None: always the 200 response)."""
    out = {"Cache-Control": cache_control, "ETag": entry.etag}
    if entry.last_modified is not None:
        out["Last-Modified"] = entry.last_modified
    if headers:
        out.update(headers)
    if request is None:
        return Response(entry.body, media_type=entry.media_type, headers=out)
    req = request.headers
    inm, ims = req.get("if-none-match"), req.get("if-modified-since")
    if (inm is not None or ims is not None) and not_modified(inm, ims, entry.etag, entry.last_modified):
        return Response(status_code=304, headers=out)
    return Response(entry.body, media_type=entry.media_type, headers=out)


def replayed(response: Response) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(raw headers, body) of a 200 ``response``: what a :data:`service.middleware.REVALIDATE` function returns."""
    return list(response.raw_headers), bytes(response.body)


def json_body(model: Any, modified: float | None = None) -> CachedBody:
    """A pydantic response model serialised once, as a CachedBody."""
    return CachedBody.of(model.model_dump_json().encode(), "application/json", modified)
