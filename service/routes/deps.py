"""Shared route dependencies: typed accessors of the app state and cache headers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

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
