"""The ``replay`` source: a folder of archived files replayed as a live feed.

The archive's valid times come from the readers (``nowcast.io.read_radar``; cached in the
source state by file signature, so a restart does not re-read the archive) or, with
``time_format``, from the file names. A simulated clock runs ``speed`` times faster than the
wall clock from ``origin`` (the simulated time at the moment the source is created; default
the first archived time). With ``loop`` the archive repeats cyclically with timestamps
shifted by whole archive periods (period = last - first + cadence), so a short archive can
feed an arbitrarily long run; ``origin`` before the archive's first time shifts the whole
archive so that it starts at ``origin`` (e.g. replay 2010 data as if it were today).
``until`` stops the simulated clock (bounded backfills, benchmarks).

Items are ``<relative path>@<cycle>`` with the shifted time; the frame read from the file is
re-timed to it.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from nowcast import dims
from nowcast.sources.base import (
    RADAR,
    Fetched,
    Item,
    NotAvailable,
    SourceBase,
    _check_kind,
    time_from_name,
)

log = logging.getLogger(__name__)


class ReplaySource(SourceBase):
    """Archived files replayed on a simulated clock; see the module docstring.

    Parameters
    ----------
    path, pattern, recursive: the archive files.
    speed: simulated seconds per wall second (``inf`` = everything up to ``until`` at once).
    origin: simulated time at start ("first" = first archived time, "now" = wall clock now,
        or a timestamp); the archive is shifted so its first file falls on ``origin`` when
        ``origin`` is not inside the archive's time range.
    loop: repeat the archive cyclically.
    until: optional simulated end time.
    time_format: take times from file names (strptime format) instead of reading the files.
    cadence: slot cadence used for the shift (default: the store's, ``store_cadence``).
    """

    def __init__(
        self,
        name: str = "replay",
        *,
        path: str | Path,
        pattern: str = "*",
        recursive: bool = False,
        speed: float = 1.0,
        origin: str | pd.Timestamp = "first",
        loop: bool = True,
        until: str | pd.Timestamp | None = None,
        time_format: str | None = None,
        cadence: pd.Timedelta | str | None = None,
        store_cadence: pd.Timedelta | str = dims.DEFAULT_CADENCE,
        kind: str = RADAR,
        reader_options: dict[str, Any] | None = None,
        grid: object = None,
    ) -> None:
        self.name = name
        if _check_kind(kind) != RADAR:
            raise ValueError(f"replay source {name!r}: only radar archives can be replayed (use a directory source for lightning files)")
        self.kind = kind
        self.path = Path(path)
        self.pattern = pattern
        self.recursive = recursive
        if not speed > 0:
            raise ValueError(f"replay speed must be positive, got {speed}")
        self.speed = float(speed)
        self.loop = loop
        self.until = dims.to_utc_timestamp(until) if until is not None else None
        self.time_format = time_format
        self.cadence = pd.Timedelta(cadence if cadence is not None else store_cadence)
        self.reader_options = reader_options or {}
        self._origin_spec = origin
        self._wall_start = time.time()
        self._files: list[tuple[pd.Timestamp, str]] | None = None
        self._origin: pd.Timestamp | None = None
        self._shift = pd.Timedelta(0)
        self._period = pd.Timedelta(0)

    # -- archive -------------------------------------------------------------------------
    def _scan(self, state: dict[str, Any]) -> list[tuple[pd.Timestamp, str]]:
        if self._files is not None:
            return self._files
        if not self.path.is_dir():
            raise NotAvailable(f"replay archive {self.path} does not exist", key=str(self.path))
        it = self.path.rglob(self.pattern) if self.recursive else self.path.glob(self.pattern)
        cache: dict[str, dict[str, str]] = state.setdefault("file_times", {})
        files: list[tuple[pd.Timestamp, str]] = []
        for p in sorted(x for x in it if x.is_file() and not x.name.startswith(".")):
            rel = p.relative_to(self.path).as_posix()
            st = p.stat()
            sig = f"{st.st_size}:{st.st_mtime_ns}"
            t: pd.Timestamp | None
            if self.time_format:
                t = time_from_name(p.name, self.time_format)
            elif cache.get(rel, {}).get("sig") == sig:
                t = pd.Timestamp(cache[rel]["time"])
            else:
                t = self._read_time(p)
                if t is not None:
                    cache[rel] = {"sig": sig, "time": t.isoformat()}
            if t is None:
                log.warning("replay %s: no time for %s; skipped", self.name, p)
                continue
            files.append((t, rel))
        if not files:
            raise NotAvailable(f"replay archive {self.path} has no readable files matching {self.pattern!r}", key=str(self.path))
        files.sort()
        first, last = files[0][0], files[-1][0]
        self._period = (last - first) + self.cadence
        if self._origin_spec == "first":
            origin = first
        elif self._origin_spec == "now":
            origin = pd.Timestamp(self._wall_start, unit="s").floor(self.cadence)
        else:
            origin = dims.to_utc_timestamp(self._origin_spec)
        self._shift = pd.Timedelta(0) if first <= origin <= last else origin.floor(self.cadence) - first
        self._origin = origin
        self._files = files
        log.info("replay %s: %d files %s..%s, period %s, shift %s", self.name, len(files), first, last, self._period, self._shift)
        return files

    def _read_time(self, p: Path) -> pd.Timestamp | None:
        from nowcast.io import ReaderError, read_radar

        try:
            da = read_radar(p, **self.reader_options)
        except ReaderError as exc:
            log.warning("replay %s: %s", self.name, exc)
            return None
        return dims.to_utc_timestamp(da[dims.TIME].values.ravel()[0])

    # -- clock ---------------------------------------------------------------------------
    def clock(self, wall: pd.Timestamp) -> pd.Timestamp:
        """Simulated time for wall-clock ``wall`` (needs one poll to know the archive)."""
        if self._origin is None:
            return wall
        elapsed = (dims.to_utc_timestamp(wall) - pd.Timestamp(self._wall_start, unit="s")).total_seconds()
        if math.isinf(self.speed):
            sim = self.until if self.until is not None else pd.Timestamp.max.floor("D")
        else:
            sim = self._origin + pd.Timedelta(seconds=max(0.0, elapsed) * self.speed)
        if self.until is not None:
            sim = min(sim, self.until)
        return sim

    def poll(self, now: pd.Timestamp, since: pd.Timestamp, state: dict[str, Any]) -> list[Item]:
        files = self._scan(state)
        first = files[0][0] + self._shift
        last = files[-1][0] + self._shift
        if self.loop:
            k0 = max(0, math.floor((since - last) / self._period))
            k1 = max(0, math.floor((now - first) / self._period))
        else:
            k0 = k1 = 0
        items = []
        for k in range(k0, k1 + 1):
            offset = self._shift + k * self._period
            for t, rel in files:
                tk = t + offset
                if since < tk <= now:
                    items.append(Item(key=f"{rel}@{k}", time=tk, kind=self.kind))
        return items

    def fetch(self, item: Item, state: dict[str, Any]) -> Fetched:
        rel = item.key.rsplit("@", 1)[0]
        p = self.path / rel
        if not p.is_file():
            raise NotAvailable(f"{p} disappeared from the replay archive", key=item.key)
        return Fetched(item=item, path=p, temporary=False, time=item.time)
