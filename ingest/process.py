"""The ingest process: the scheduler and the process entry points.

``nowcast ingest --config FILE`` (and ``nowcast serve``, through :func:`run_ingest_process`)
runs :class:`IngestService`: one APScheduler 3 ``BlockingScheduler`` in its own process, one
job per source (``interval`` seconds with ``jitter``; ``coalesce=True``, ``max_instances=1``,
``misfire_grace_time`` = one store cadence), plus a heartbeat job that renews the store's
writer lease. The process is the single writer of the observation store: it takes the
lease (:class:`ingest.lease.WriterLock`) before anything else and exits if it loses it.
SIGTERM / SIGINT stop the scheduler; running jobs finish their current frame first.

The configuration schema is in :mod:`ingest.config`.
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
from typing import Any

import pandas as pd

from ingest.config import IngestConfig, LogConfig, coerce_config
from nowcast.config import ConfigError

log = logging.getLogger("nowcast.ingest.process")


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
        from ingest import IngestSettings, IngestStatus, SourceRunner, WriterLock
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
        from ingest import LockHeld

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


__all__ = ["IngestService", "JsonFormatter", "main", "run_ingest_process", "setup_logging", "stop_ingest_process"]
