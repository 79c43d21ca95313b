"""The ingest process: configuration schema, the scheduler and the process entry points.

``nowcast ingest --config FILE`` (and ``nowcast serve``, through :func:`run_ingest_process`)
runs :class:`IngestService`: one APScheduler 3 ``BlockingScheduler`` in its own process, one
job per source (``interval`` seconds with ``jitter``; ``coalesce=True``, ``max_instances=1``,
``misfire_grace_time`` = one store cadence), plus a heartbeat job that renews the store's
writer lease. The process is the single writer of the observation store: it takes the
lease (:class:`nowcast.ingest.WriterLock`) before anything else and exits if it loses it.
SIGTERM / SIGINT stop the scheduler; running jobs finish their current frame first.

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

import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nowcast.config import ConfigError, load_config

log = logging.getLogger("nowcast.ingest.process")


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


# ============================================================================ logging
class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(cfg: LogConfig) -> None:
    handler: logging.Handler = logging.FileHandler(cfg.file) if cfg.file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if cfg.json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.level)
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(cfg.level)))
    logging.getLogger("httpx").setLevel(logging.WARNING)


# ============================================================================ the service
class IngestService:
    """Builds the store, the writer lease and one runner per enabled source."""

    def __init__(self, config: IngestConfig, *, take_lock: bool = True) -> None:
        from nowcast.ingest import IngestSettings, IngestStatus, SourceRunner, WriterLock
        from nowcast.sources import create_source
        from nowcast.store import ObservationStore

        self.config = config
        sc = config.store
        self.lock = WriterLock(sc.url, ttl=config.lock_ttl, storage_options=sc.storage_options)
        if take_lock:
            self.lock.acquire()
        try:
            if _exists(sc.url, sc.storage_options):
                self.store = ObservationStore.open(sc.url, "a", sc.storage_options)
            elif sc.create:
                self.store = ObservationStore.create(sc.url, sc.grid.build(), cadence=sc.cadence, storage_options=sc.storage_options)
            else:
                raise ConfigError(f"store {sc.url} does not exist and store.create is false")
            if self.store.cadence != pd.Timedelta(sc.cadence):
                raise ConfigError(f"store {sc.url} has cadence {self.store.cadence}, configuration says {sc.cadence}")
            self.write_lock = threading.Lock()
            self.status = IngestStatus(self.store, self.write_lock)
            self.runners = []
            for s in config.sources:
                if not s.enabled:
                    continue
                opts = s.options()
                if s.type == "http":
                    opts.setdefault("timeout", s.timeout or config.timeout)
                source = create_source(s.type, name=s.name, kind=s.kind, grid=self.store.grid, store_cadence=self.store.cadence, **opts)
                settings = IngestSettings(
                    backfill=pd.Timedelta(s.backfill),
                    quarantine_dir=config.quarantine_dir,
                    regrid_method=config.regrid_method,
                    max_items_per_run=config.max_items_per_run,
                    missing_retry=pd.Timedelta(config.missing_retry),
                    notify_url=config.notify_url,
                    clock_offset=pd.Timedelta(s.clock_offset),
                )
                self.runners.append(SourceRunner(source, self.store, settings, self.status, self.write_lock))
        except BaseException:
            self.lock.release()
            raise
        self._scheduler: Any = None
        self._stopping = threading.Event()

    # -- one pass ------------------------------------------------------------------------
    def run_once(self, now: pd.Timestamp | None = None) -> list[Any]:
        """Run every source once, one after the other (a failing source never stops the rest)."""
        return [r.run_once(now) for r in self.runners]

    # -- scheduled ----------------------------------------------------------------------
    def _heartbeat(self) -> None:
        from nowcast.ingest import LockHeld

        try:
            self.lock.refresh()
        except LockHeld as exc:
            log.error("%s; stopping", exc)
            self.stop()

    def stop(self, *_: object) -> None:
        """Stop the scheduler (safe from signal handlers and other threads)."""
        self._stopping.set()
        if self._scheduler is not None and self._scheduler.running:
            try:
                self._scheduler.shutdown(wait=False)
            except Exception:  # already stopping
                pass

    def run_forever(self, install_signals: bool = True) -> None:
        """Run the scheduler until SIGTERM/SIGINT (or :meth:`stop`)."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.blocking import BlockingScheduler

        cadence_s = max(1, int(self.store.cadence.total_seconds()))
        sched = BlockingScheduler(
            executors={"default": ThreadPoolExecutor(self.config.workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": cadence_s},
            timezone=UTC,
        )
        by_name = {s.name: s for s in self.config.sources}
        start = datetime.now(UTC)
        for r in self.runners:
            sc = by_name[r.name]
            sched.add_job(r.run_once, "interval", seconds=sc.interval, jitter=sc.jitter or None, id=r.name, name=f"ingest {r.name}", next_run_time=start)
        sched.add_job(self._heartbeat, "interval", seconds=max(1.0, self.config.lock_ttl / 3), id="_heartbeat", name="writer lease heartbeat")
        self._scheduler = sched
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        log.info("ingest started: store %s, sources %s (pid %d)", self.store.url, [r.name for r in self.runners], os.getpid())
        try:
            if not self._stopping.is_set():
                sched.start()
        finally:
            self.close()
            log.info("ingest stopped")

    def close(self) -> None:
        for r in self.runners:
            try:
                r.source.close()
            except Exception as exc:
                log.debug("closing %s: %s", r.name, exc)
        self.status.flush()
        self.lock.release()


def _exists(url: str, storage_options: dict[str, Any] | None) -> bool:
    from nowcast.store import ObservationStore, StoreError

    try:
        ObservationStore.open(url, "r", storage_options)
        return True
    except StoreError:
        return False


# ============================================================================ entry points
def main(config: IngestConfig, once: bool = False) -> int:
    """Run the ingest in this process (the CLI calls this); returns an exit code."""
    setup_logging(config.log)
    service = IngestService(config)
    if once:
        try:
            reports = service.run_once()
        finally:
            service.close()
        return 1 if all(r.errors and not r.ingested for r in reports) and reports else 0
    service.run_forever()
    return 0


def _child_main(config_json: str) -> None:
    cfg = IngestConfig.model_validate_json(config_json)
    try:
        sys.exit(main(cfg))
    except Exception as exc:
        logging.getLogger("nowcast.ingest.process").error("ingest process failed: %s", exc)
        sys.exit(1)


def run_ingest_process(
    config: IngestConfig | dict[str, Any] | str | Path | None = None,
    *,
    store: str | None = None,
) -> multiprocessing.process.BaseProcess:
    """Start the ingest in a child process (spawn start method) and return it (started).

    ``config`` as in :func:`coerce_config`; ``store`` overrides the store URL. The config is
    validated here, before the process starts. Stop it with :func:`stop_ingest_process`
    (SIGTERM: the child finishes the frame it is writing and releases the writer lease).
    """
    cfg = coerce_config(config, store=store)
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_child_main, args=(cfg.model_dump_json(by_alias=True),), name="nowcast-ingest", daemon=False)
    proc.start()
    log.info("started ingest process pid %s for %s", proc.pid, cfg.store.url)
    return proc


def stop_ingest_process(proc: multiprocessing.process.BaseProcess, timeout: float = 30.0) -> int | None:
    """SIGTERM the ingest child, wait up to ``timeout`` s (then SIGKILL); returns its exit code."""
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout)
        if proc.is_alive():
            log.warning("ingest process %s did not stop in %.0f s; killing it", proc.pid, timeout)
            proc.kill()
            proc.join(5)
    return proc.exitcode


__all__ = [
    "IngestConfig",
    "IngestService",
    "SourceConfig",
    "StoreConfig",
    "coerce_config",
    "load_ingest_config",
    "main",
    "run_ingest_process",
    "stop_ingest_process",
]
