"""Service settings: one pydantic-settings class, environment prefix ``NOWCAST_``.

Values come from (highest first) keyword arguments, ``NOWCAST_*`` environment variables
(nested keys with ``__``, e.g. ``NOWCAST_INGEST__SOURCE=replay``) and defaults. A TOML/YAML
file is read by ``nowcast serve --config FILE`` and passed in as keyword arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings of the inference service, API and dashboard (see docs/api.md)."""

    model_config = SettingsConfigDict(env_prefix="NOWCAST_", env_nested_delimiter="__", extra="forbid", frozen=True)

    # -- stores --------------------------------------------------------------------------
    store: str = Field("var/observations.zarr", description="observation store (path or s3:// URL); written by ingest")
    store_options: dict[str, Any] | None = Field(None, description="fsspec storage options of the observation store")
    forecast_store: str = Field("var/forecasts.zarr", description="forecasts store (path or s3:// URL); written by inference")
    forecast_store_options: dict[str, Any] | None = Field(None, description="fsspec storage options of the forecasts store")

    # -- model and inference ---------------------------------------------------------------
    model: str = Field("extrapolation", description="registered nowcaster name (e.g. convlstm, extrapolation)")
    checkpoint: Path | None = Field(None, description="checkpoint for a trained model; load failure -> fallback model")
    model_options: dict[str, Any] = Field(default_factory=dict, description="extra options of the nowcaster")
    model_registry: str | None = Field(
        None, description="model registry URL: serve its champion (when no checkpoint is given) and follow promotions"
    )
    model_registry_poll_seconds: float = Field(30.0, gt=0, description="how often the champion pointer is checked")
    shipped_champion: Literal["real", "synthetic"] | None = Field(
        None,
        description="with model_registry: when the registry has no champion (or does not exist), create it and make the "
        "ConvLSTM weights shipped for this domain (with their model card) the champion",
    )
    fallback_model: str = Field("extrapolation", description="used when the configured model cannot be loaded")
    lead_minutes: list[int] = Field(default_factory=lambda: [5 * i for i in range(1, 16)], description="forecast leads, minutes")
    inference: bool = Field(True, description="`nowcast serve` runs the inference loop (in a child process, see inference_process)")
    inference_process: bool = Field(
        True,
        description="`nowcast serve` runs the inference loop in its own child process (the API process keeps a proxy and "
        "does not import the models); false: a thread of the API process",
    )
    inference_nice: int = Field(5, ge=0, le=19, description="niceness added to the inference process (lower priority than the API)")
    inference_threads: int | None = Field(
        1, ge=1, description="torch / OpenMP threads of the inference process (None: the libraries' default, one per core)"
    )
    inference_restart_seconds: float = Field(
        2.0, gt=0, description="first delay before an inference process that died is restarted (doubles up to 60 s)"
    )
    inference_rpc_timeout_s: float = Field(
        120.0, gt=0, description="how long the admin routes wait for the inference process (reload, run now) before 503"
    )
    poll_seconds: float = Field(1.0, gt=0, description="how often the inference loop checks the store version")
    retention_runs: int = Field(36, ge=1, description="forecast runs kept (newest first)")
    retention_hours: float = Field(6.0, gt=0, description="forecast runs older than this (before the newest) are deleted")

    # -- HTTP ------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(None, description="key for admin routes (header X-API-Key); none: admin disabled")
    cache_items: int = Field(
        8192,
        ge=1,
        description="rendered tiles/images kept in the response cache (also bounded by a quarter of field_cache_mb); "
        "one dashboard view animating 15 leads of two layers is several hundred tiles",
    )
    field_cache_mb: int = Field(512, ge=16, description="memory budget of decoded fields and point-series stacks, MiB")
    tile_index_cache: int = Field(4096, ge=1, description="tile -> grid index mappings kept (LRU)")
    min_zoom: int = Field(0, ge=0, le=22)
    max_zoom: int = Field(12, ge=0, le=22)
    point_history_minutes: int = Field(60, ge=0, le=24 * 60, description="observed history returned by /v1/point")
    index_max_age_s: int = Field(5, ge=0, description="Cache-Control max-age of mutable responses (index, latest)")
    frames_in_index: int = Field(36, ge=1, le=2000, description="observed frames listed by /v1/frames")
    store_poll_s: float = Field(
        1.0,
        ge=0,
        description="store versions are re-read through the store API at least this often; local stores are also "
        "checked on every request by a cheap change stamp, object storage only this often (0: every request)",
    )
    stamp_reuse_s: float = Field(
        0.01,
        ge=0,
        description="a check of the local stores' change stamps (a file read, a listing, a stat) is reused for this "
        "long: the requests of one burst share one check, and new data show at most this much later (0: every request)",
    )
    refresh_wait_s: float = Field(
        0.005,
        ge=0,
        description="after the stores changed, how long a request waits for the new snapshot (read, and its "
        "documents and point stacks built) before it is answered from the previous one; larger: never stale",
    )
    render_threads: int = Field(2, ge=1, le=64, description="worker threads rendering cache misses (tiles, maps, series)")
    prewarm_tiles: bool = Field(True, description="decode the frames of /v1/frames for tiles as soon as they appear (newest frame, the run's leads, older frames)")
    background_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="the most of the wall time (and so of the GIL) the background work after new data takes: the tile "
        "prewarm and the point series built ahead sleep between steps; lower: a smaller tail for the requests in "
        "flight, the warm data a little later (1: no sleeping)",
    )
    max_query_bytes: int = Field(8192, ge=256, description="longer query strings get 414")
    max_header_bytes: int = Field(16384, ge=1024, description="larger request header blocks get 431")
    max_body_bytes: int = Field(65536, ge=0, description="larger request bodies get 413 (the API takes no uploads)")

    # -- ingest (run by `nowcast serve` in its own process) --------------------------------
    ingest: dict[str, Any] = Field(
        default_factory=lambda: {"source": "synthetic", "source_options": {"backfill": "1h", "interval": 30}},
        description="configuration handed to ingest.process.run_ingest_process (source: synthetic | replay | preset)",
    )
    run_ingest: bool = Field(True, description="`nowcast serve` starts the ingest process")

    @field_validator("forecast_store", mode="before")
    @classmethod
    def _path_to_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, Path) else v

    @field_validator("lead_minutes")
    @classmethod
    def _leads_positive(cls, v: list[int]) -> list[int]:
        if not v or any(m <= 0 for m in v) or sorted(set(v)) != v:
            raise ValueError(f"lead_minutes must be positive, increasing and unique, got {v}")
        return v

    @model_validator(mode="after")
    def _shipped_needs_registry(self) -> ServiceSettings:
        if self.shipped_champion is not None and not self.model_registry:
            raise ValueError("shipped_champion needs model_registry (where the shipped weights are registered)")
        return self

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None


#: what ``nowcast serve`` uses on its default synthetic source when neither a settings file,
#: flags nor NOWCAST_* variables choose a model: the shipped synthetic ConvLSTM as the champion
#: of a local registry (extrapolation stays the fallback)
LIVE_MODEL_DEFAULTS: dict[str, Any] = {"model_registry": "var/models", "shipped_champion": "synthetic"}
#: settings that, when given anywhere, mean the user chose the model
MODEL_KEYS = ("model", "checkpoint", "model_registry", "shipped_champion")


def live_model_defaults(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """``data`` plus :data:`LIVE_MODEL_DEFAULTS` when the live system runs its default synthetic
    ingest and nothing (``data`` from file and flags, or ``NOWCAST_*`` in ``environ``) names a
    model, checkpoint or registry; ``data`` unchanged otherwise (other data: other weights)."""
    chosen = any(k in data for k in MODEL_KEYS) or any(f"NOWCAST_{k.upper()}" in environ for k in MODEL_KEYS)
    other_data = "ingest" in data or any(k.startswith("NOWCAST_INGEST") for k in environ) or data.get("run_ingest") is False
    return data if chosen or other_data else {**LIVE_MODEL_DEFAULTS, **data}
