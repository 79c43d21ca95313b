"""Admin routes (reload the model, force a forecast); they need the API key (header X-API-Key).

With inference in its own process (``nowcast serve``) both are calls to that process; one that
is not running or does not answer within ``inference_rpc_timeout_s`` gets 503 and the reason.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

from service.data import iso
from service.inference import InferenceUnavailable
from service.routes.deps import Settings, error_responses
from service.routes.info import model_info
from service.schemas import AdminResult, ErrorResponse

_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="admin API key (settings.api_key)")


def require_api_key(settings: Settings, key: Annotated[str | None, Depends(_key_header)]) -> None:
    """401 unless the X-API-Key header matches the configured key (admin is off without one)."""
    expected = settings.api_key_value()
    if not expected:
        raise HTTPException(401, "admin routes are disabled: no api_key configured (NOWCAST_API_KEY)")
    if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong X-API-Key header")


#: the inference process is down or did not answer in time
UNAVAILABLE = {503: {"description": "the inference process is not running or did not answer in time", "model": ErrorResponse}}

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_api_key)])


def _loop(request: Request):  # noqa: ANN202
    loop = getattr(request.app.state, "inference", None)
    if loop is None:
        raise HTTPException(409, "inference does not run in this process")
    return loop


@router.post(
    "/reload-model",
    response_model=AdminResult,
    responses={**error_responses(), 401: {"description": "missing or wrong API key"}, 409: {"description": "no inference here"}, **UNAVAILABLE},
    summary="Reload the configured model (checkpoint); falls back to extrapolation if it fails",
)
def reload_model(request: Request) -> AdminResult:
    loop = _loop(request)
    try:
        status = loop.load_model()
    except InferenceUnavailable as exc:
        raise HTTPException(503, str(exc)) from exc
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.set_model(status.active, status.version, status.fallback)
    detail = status.message or f"loaded {status.active} {status.version}".strip()
    return AdminResult(ok=not status.fallback, detail=detail, model=model_info(request))


@router.post(
    "/forecast",
    response_model=AdminResult,
    responses={401: {"description": "missing or wrong API key"}, 409: {"description": "no inference here or no data"}, **UNAVAILABLE},
    summary="Run a forecast now for the newest observed frame (replaces an existing run of that time)",
)
def force_forecast(request: Request) -> AdminResult:
    loop = _loop(request)
    try:
        info = loop.step(force=True)
    except InferenceUnavailable as exc:
        raise HTTPException(503, str(exc)) from exc
    if info is None:
        reason = loop.status.last_error or "no observed frame to forecast from"
        raise HTTPException(409, f"no forecast made: {reason}")
    request.app.state.access.refresh(force=True)  # read your writes: the next request sees this run
    return AdminResult(ok=True, detail=f"forecast published for {iso(info.init_time)}", model=model_info(request), init_time=iso(info.init_time))
