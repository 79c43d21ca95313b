"""Ingest status: counters per source, persisted as the store state ``ingest_status``
(read by the API's /v1/status and /metrics through :func:`read_ingest_status`)."""

from __future__ import annotations

import copy
import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

import pandas as pd

from ingest.settings import RunReport

if TYPE_CHECKING:
    from nowcast.store import ObservationStore

#: the logger name of the ingest pipeline since it was nowcast/ingest.py (log configuration and
#: JSON log consumers key on it)
log = logging.getLogger("nowcast.ingest")


#: store-state key of the ingest status document
STATUS_KEY = "ingest_status"


class IngestStatus:
    """Thread-safe ingest counters per source, persisted as the store state ``ingest_status``.

    Counters continue from the stored document, so they survive restarts.
    """

    def __init__(self, store: ObservationStore, write_lock: threading.Lock | None = None) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._write_lock = write_lock or threading.Lock()
        prev = read_ingest_status(store)
        self._doc: dict[str, Any] = {
            "sources": dict(prev.get("sources", {})),
            "started": pd.Timestamp.now(tz="UTC").isoformat(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        with self._lock:
            self._reconcile(None)

    def _stored_counts(self) -> dict[str, int]:
        try:
            return dict(self.store.frames_by_source())
        except Exception as exc:  # a store without per-source counts (or a test double)
            log.debug("no per-source frame counts: %s", exc)
            return {}

    def _reconcile(self, name: str | None) -> None:
        """Raise ``frames_ingested`` to the store's count (frames written by a process killed
        before it flushed its status); caller holds ``self._lock``."""
        counts = self._stored_counts()
        for source, entry in self._doc["sources"].items():
            if name is not None and source != name:
                continue
            stored = counts.get(source, 0)
            if int(entry.get("frames_ingested", 0)) < stored:
                entry["frames_ingested"] = stored

    def _entry(self, name: str) -> dict[str, Any]:
        e = self._doc["sources"].setdefault(name, {})
        for k in ("frames_ingested", "frames_failed", "frames_backfilled", "frames_duplicate", "frames_quarantined", "frames_missing", "lightning_slots", "polls", "consecutive_failures"):
            e.setdefault(k, 0)
        for k in ("last_poll", "last_success", "last_frame", "last_error", "last_error_time", "lag_seconds", "kind"):
            e.setdefault(k, None)
        return e

    def register(self, name: str, kind: str) -> None:
        with self._lock:
            self._entry(name)["kind"] = kind
            self._reconcile(name)

    def record(self, report: RunReport, source_now: pd.Timestamp) -> None:
        with self._lock:
            e = self._entry(report.source)
            e["polls"] += 1
            e["frames_ingested"] += report.ingested
            self._reconcile(report.source)
            e["frames_backfilled"] += report.backfilled
            e["frames_duplicate"] += report.duplicates
            e["frames_quarantined"] += report.quarantined
            e["frames_failed"] += report.failed + report.quarantined
            e["frames_missing"] += report.missing
            e["lightning_slots"] += report.lightning_slots
            now = pd.Timestamp.now(tz="UTC").isoformat()
            e["last_poll"] = now
            if report.newest is not None and (e["last_frame"] is None or pd.Timestamp(e["last_frame"]) < report.newest):
                e["last_frame"] = report.newest.isoformat()
            if e["last_frame"] is not None:
                e["lag_seconds"] = max(0.0, (source_now - pd.Timestamp(e["last_frame"])).total_seconds())
            if report.errors:
                e["last_error"] = report.errors[-1]
                e["last_error_time"] = now
                e["consecutive_failures"] += 1
            else:
                e["consecutive_failures"] = 0
                e["last_success"] = now

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            doc = copy.deepcopy(self._doc)
        doc["updated"] = pd.Timestamp.now(tz="UTC").isoformat()
        return doc

    def flush(self) -> None:
        """Write the status document into the store state (errors logged, never raised)."""
        doc = self.snapshot()
        try:
            with self._write_lock:
                self.store.set_state(STATUS_KEY, doc)
        except Exception as exc:  # status must never break ingest
            log.warning("could not write ingest status: %s", exc)


def read_ingest_status(store: ObservationStore) -> dict[str, Any]:
    """The ingest status document of ``store`` ({} before the first ingest).

    ``{"updated", "started", "pid", "host", "sources": {name: {"kind", "frames_ingested",
    "frames_failed", "frames_backfilled", "frames_duplicate", "frames_quarantined",
    "frames_missing", "lightning_slots", "polls", "consecutive_failures", "last_poll",
    "last_success", "last_frame", "lag_seconds", "last_error", "last_error_time"}}}``;
    times are ISO 8601 UTC, ``lag_seconds`` is the source clock at the last poll minus the
    newest frame ingested. ``frames_ingested`` is at least the store's own count of the
    source's frames (exact after a SIGKILL that came before the status was flushed).
    """
    try:
        doc = dict(store.get_state(STATUS_KEY))
    except Exception as exc:
        log.debug("no ingest status: %s", exc)
        return {}
    try:  # frames stored by a process killed before it flushed its status still count
        counts = store.frames_by_source()
    except Exception as exc:
        log.debug("no per-source frame counts: %s", exc)
        counts = {}
    for name, entry in doc.get("sources", {}).items():
        if isinstance(entry, dict) and int(entry.get("frames_ingested") or 0) < counts.get(name, 0):
            entry["frames_ingested"] = counts[name]
    return doc
