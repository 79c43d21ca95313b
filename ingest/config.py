"""The ingest configuration: schema (pydantic), loading and the short form of the service settings.

Configuration (TOML or YAML; validated before any work starts; see docs/ingest.md)::

    quarantine_dir = "var/quarantine"
    [store]
    url = "var/observations.zarr"
    cadence = "5min"
    grid = { synthetic = true }          # or { from_file = "x.h5" } or { crs=..., x0=..., ... }
    [[sources]]
    name = "dwd"
    type = "http"                        # synthetic | http | directory | replay | plug-ins
    preset = "dwd-hx"                    # other keys are options of the source type
    interval = 60
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nowcast.config import ConfigError, load_config


def _duration(v: Any) -> str:
    try:
        td = pd.Timedelta(v)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a duration: {v!r} (use e.g. '5min', '3h')") from exc
    if td < pd.Timedelta(0):
        raise ValueError(f"duration must not be negative: {v!r}")
    return str(v)


# ============================================================================ schema
class GridConfig(BaseModel):
    """The store grid, used only when the store is created.

    One of: ``synthetic = true`` (the synthetic radar's default grid, optionally ``nx``,
    ``ny``, ``resolution``, ``center_lon``, ``center_lat``, ``crs``), ``from_file`` (the grid
    of a radar file), or an explicit regular grid ``crs, x0, y0, dx, dy, nx, ny`` (cell
    centre of the first cell, signed steps; dy < 0 for north-up).
    """

    model_config = ConfigDict(extra="forbid")
    synthetic: bool = False
    from_file: Path | None = None
    crs: str | None = None
    x0: float | None = None
    y0: float | None = None
    dx: float | None = None
    dy: float | None = None
    nx: int | None = Field(None, gt=0)
    ny: int | None = Field(None, gt=0)
    resolution: float | None = Field(None, gt=0)
    center_lon: float | None = None
    center_lat: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> GridConfig:
        explicit = all(v is not None for v in (self.crs, self.x0, self.y0, self.dx, self.dy, self.nx, self.ny))
        kinds = int(self.synthetic) + int(self.from_file is not None) + int(explicit)
        if kinds == 0:
            self.synthetic = True
        elif kinds > 1:
            raise ValueError("give exactly one of synthetic, from_file, or crs/x0/y0/dx/dy/nx/ny")
        return self

    def build(self) -> Any:
        from nowcast.grid import Grid

        if self.from_file is not None:
            from nowcast.io import read_radar

            return Grid.of(read_radar(self.from_file))
        if self.synthetic:
            from nowcast.sources.synthetic import SyntheticRadar

            kw: dict[str, Any] = {}
            if self.nx:
                kw["nx"] = self.nx
            if self.ny:
                kw["ny"] = self.ny
            if self.resolution:
                kw["resolution"] = self.resolution
            if self.center_lon is not None and self.center_lat is not None:
                kw["center_lonlat"] = (self.center_lon, self.center_lat)
            if self.crs:
                kw["crs"] = self.crs
            return SyntheticRadar.default_grid(**kw)
        return Grid.regular(self.crs, self.x0, self.y0, self.dx, self.dy, self.nx, self.ny)  # type: ignore[arg-type]


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = "var/observations.zarr"
    create: bool = Field(True, description="create the store when it does not exist")
    cadence: str = "5min"
    grid: GridConfig = Field(default_factory=GridConfig)
    storage_options: dict[str, Any] | None = None

    _v_cadence = field_validator("cadence")(classmethod(lambda cls, v: _duration(v)))


class SourceConfig(BaseModel):
    """One source: ``name``, ``type`` and scheduling keys; other keys are the source's options."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: str
    kind: Literal["radar", "lightning"] = "radar"
    enabled: bool = True
    interval: float = Field(60.0, gt=0, description="seconds between polls")
    jitter: float = Field(5.0, ge=0, description="random delay added to each poll, seconds")
    backfill: str = Field("3h", description="how far back missing frames are fetched")
    timeout: float | None = Field(None, gt=0, description="network timeout, seconds (default: top-level timeout)")
    clock_offset: str = Field("0s", description="added to the wall clock for this source (e.g. '-16h' to follow an archive as if live)")

    _v_backfill = field_validator("backfill")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("clock_offset")
    @classmethod
    def _offset(cls, v: str) -> str:
        try:
            pd.Timedelta(v)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a duration: {v!r}") from exc
        return v

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        from nowcast.sources import SOURCES

        if v not in SOURCES:
            raise ValueError(f"unknown source type {v!r}; valid: {', '.join(SOURCES.names())}")
        return v

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = Field(False, alias="json", description="structured logs, one JSON object per line")
    file: Path | None = None


def _default_sources() -> list[SourceConfig]:
    return [SourceConfig(name="synthetic", type="synthetic", interval=30.0, backfill="1h")]


class IngestConfig(BaseModel):
    """The ingest configuration file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    store: StoreConfig = Field(default_factory=StoreConfig)
    sources: list[SourceConfig] = Field(default_factory=_default_sources)
    quarantine_dir: Path = Path("var/quarantine")
    timeout: float = Field(10.0, gt=0, description="default hard timeout of network calls, seconds")
    regrid_method: Literal["nearest", "area_mean"] = "nearest"
    max_items_per_run: int = Field(500, ge=1)
    missing_retry: str = "5min"
    notify_url: str | None = Field(None, description="POSTed {time, source, store, version} after each new frame")
    lock_ttl: float = Field(60.0, gt=0, description="writer lease expiry, seconds")
    workers: int = Field(4, ge=1, le=64, description="threads running source jobs")
    log: LogConfig = Field(default_factory=LogConfig)

    _v_retry = field_validator("missing_retry")(classmethod(lambda cls, v: _duration(v)))

    @model_validator(mode="after")
    def _unique_names(self) -> IngestConfig:
        names = [s.name for s in self.sources]
        if "ingest_status" in names:
            raise ValueError("'ingest_status' is reserved (the status document); rename the source")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names must be unique; repeated: {dup}")
        if not any(s.enabled for s in self.sources):
            raise ValueError("no enabled source")
        return self


def load_ingest_config(path: str | Path | None = None, overrides: list[str] | None = None) -> IngestConfig:
    """Read and validate an ingest configuration (TOML/YAML/JSON) with ``key=value`` overrides."""
    return load_config(IngestConfig, path, overrides)


def coerce_config(config: IngestConfig | dict[str, Any] | str | Path | None, store: str | None = None) -> IngestConfig:
    """An :class:`IngestConfig` from a model, a dict, a file path or None (defaults).

    A dict may use the short form ``{"source": "synthetic", "source_options": {...}}`` (one
    source of that type, or of type http when ``source`` names an HTTP preset such as
    ``"dwd-hx"``) as in the service settings; ``store`` overrides the store URL.
    """
    if isinstance(config, IngestConfig):
        cfg = config
    elif config is None:
        cfg = IngestConfig()
    elif isinstance(config, str | Path):
        cfg = load_ingest_config(config)
    else:
        data = dict(config)
        short = data.pop("source", None)
        if short is not None and "sources" not in data:
            from nowcast.sources import SOURCES
            from nowcast.sources.presets import PRESETS

            opts = dict(data.pop("source_options", {}) or {})
            name = str(short)
            if name not in SOURCES and name in PRESETS:  # {"source": "dwd-hx"}: an http preset
                opts = {"type": "http", "preset": name, **opts}
            data["sources"] = [{"name": name, "type": name, **opts}]
        try:
            cfg = IngestConfig.model_validate(data)
        except Exception as exc:
            raise ConfigError(f"invalid ingest configuration: {exc}") from exc
    if store is not None:
        cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"url": str(store)})})
    return cfg


__all__ = ["GridConfig", "IngestConfig", "LogConfig", "SourceConfig", "StoreConfig", "coerce_config", "load_ingest_config"]
