"""Pydantic response models of the HTTP API (version 1). Times are UTC ISO 8601 strings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx response."""

    detail: str = Field(description="what was wrong, naming the bad value")


class ObservationStatus(BaseModel):
    last_frame: str | None = Field(description="time of the newest complete observed frame")
    age_seconds: float | None = Field(description="now - last_frame")
    frames: int = Field(description="complete frames in the store")
    store_version: str


class ForecastStatus(BaseModel):
    init_time: str
    age_seconds: float = Field(description="now - init_time")
    model: str
    model_version: str
    written_at: str
    compute_seconds: float | None


class ModelInfo(BaseModel):
    configured: str = Field(description="model named in the settings")
    active: str = Field(description="model actually producing forecasts")
    version: str
    checkpoint: str | None
    fallback: bool = Field(description="true when the configured model could not be loaded")
    message: str
    inference_running: bool
    last_error: str | None
    registry_version: str | None = Field(None, description="model registry version id when serving the champion")
    alert: str | None = Field(None, description="a promoted model that could not be loaded (the previous one keeps serving)")
    card_url: str | None = Field(None, description="model card of the serving weights (GET it for JSON); null when none")
    lightning_probability: str | None = Field(None, description="what the lightning probability means (event, cell, window), from the model card")


class StatusResponse(BaseModel):
    status: str = Field(description="ok | starting | degraded")
    now: str
    observations: ObservationStatus | None
    forecast: ForecastStatus | None
    model: ModelInfo | None = Field(description="null when inference does not run in this process")
    ingest: dict[str, Any] | None = Field(description="ingest health reported by the ingest process, when available")
    messages: list[str]


class LayerLinks(BaseModel):
    rain: str
    lightning: str


class FrameEntry(BaseModel):
    key: str = Field(description="time key used in tile and map URLs")
    kind: str = Field(description="observed | forecast")
    valid_time: str
    lead_minutes: int | None
    tiles: LayerLinks = Field(description="XYZ tile URL templates ({z}/{x}/{y})")
    maps: LayerLinks = Field(description="whole-grid PNG map URLs")


class FramesResponse(BaseModel):
    generated_at: str
    observed: list[FrameEntry]
    forecast: list[FrameEntry]
    forecast_init_time: str | None
    model: str | None
    bbox_lonlat: list[float] = Field(description="[lon_min, lat_min, lon_max, lat_max]")
    max_age_seconds: int = Field(description="how long this index may be cached")


class GridInfo(BaseModel):
    shape: list[int] = Field(description="[ny, nx]")
    resolution: float = Field(description="cell size in CRS units")
    bounds: list[float] = Field(description="[xmin, ymin, xmax, ymax] in CRS units")
    bbox_lonlat: list[float] = Field(description="[lon_min, lat_min, lon_max, lat_max]")
    crs: str = Field(description="CRS as an authority code or PROJ string")
    crs_wkt: str


class ForecastMeta(BaseModel):
    init_time: str
    key: str
    lead_minutes: list[int]
    valid_times: list[str]
    model: str
    model_version: str
    written_at: str
    compute_seconds: float | None
    grid: GridInfo
    variables: dict[str, str] = Field(description="variable -> units")
    frames: list[FrameEntry]


class ForecastList(BaseModel):
    init_times: list[str]
    latest: str | None


class ObservedPoint(BaseModel):
    time: str
    rain_rate: float | None = Field(description="mm/h; null = missing or no coverage")
    lightning: float | None = Field(description="flashes per cell per interval; null = no data")


class ForecastPoint(BaseModel):
    lead_minutes: int
    valid_time: str
    rain_rate: float | None = Field(description="mm/h")
    lightning_probability: float | None = Field(description="0..1")


class PointResponse(BaseModel):
    lat: float
    lon: float
    row: int
    col: int
    observed: list[ObservedPoint]
    forecast_init_time: str | None
    model: str | None
    forecast: list[ForecastPoint]


class LegendEntry(BaseModel):
    lower: float
    upper: float | None
    color: str
    label: str


class Legend(BaseModel):
    layer: str
    label: str
    units: str
    entries: list[LegendEntry]


class AdminResult(BaseModel):
    ok: bool
    detail: str
    model: ModelInfo | None = None
    init_time: str | None = None
