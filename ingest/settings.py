"""Options of the ingest pipeline (per source) and the report of one run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class IngestSettings:
    """Runtime options of the pipeline (per source).

    backfill: how far back (source clock) items are looked for.
    quarantine_dir: where bad files go (``<dir>/<source>/``).
    regrid_method: ``"nearest"`` or ``"area_mean"`` (:func:`nowcast.regrid.regrid`).
    max_items_per_run: at most this many fetches per run (the rest waits for the next run).
    missing_retry: back-off for items the provider does not offer (doubles up to 8x);
        items younger than ``fresh_window`` are retried at every run.
    backfilled_after: a frame older than this when ingested counts as backfilled.
    max_bytes: files larger than this are refused (bad).
    lightning_settle: how long after its end a lightning slot is written.
    reader_options: keyword options for ``nowcast.io.read_radar``.
    clock_offset: added to the wall clock to get the source's "now" (negative: consume a
        provider's archive as if it were live; testing).
    notify_url: POSTed a small JSON after each new complete frame (errors only logged).
    on_frame: called with (time, source name) after each new complete frame.
    """

    backfill: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("3h"))
    quarantine_dir: Path = Path("var/quarantine")
    regrid_method: str = "nearest"
    max_items_per_run: int = 500
    missing_retry: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("5min"))
    fresh_window: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("15min"))
    backfilled_after: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("15min"))
    max_bytes: int = 2 * 1024**3
    lightning_settle: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("1min"))
    reader_options: dict[str, Any] = field(default_factory=dict)
    clock_offset: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(0))
    notify_url: str | None = None
    notify_timeout: float = 2.0
    on_frame: Callable[[pd.Timestamp, str], None] | None = None


@dataclass
class RunReport:
    """What one run of a source did."""

    source: str
    polled: int = 0
    ingested: int = 0
    backfilled: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failed: int = 0
    missing: int = 0
    skipped: int = 0
    lightning_slots: int = 0
    errors: list[str] = field(default_factory=list)
    newest: pd.Timestamp | None = None
    seconds: float = 0.0
