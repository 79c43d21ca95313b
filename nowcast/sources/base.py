"""The live-source protocol, its registry and the small value types sources exchange.

A *source* lists what a provider currently offers (:meth:`Source.poll` -> :class:`Item`) and
fetches one item (:meth:`Source.fetch` -> :class:`Fetched`: a local file holding the bytes,
or, for sources that compute frames, a ready ``xarray.Dataset``). Sources know nothing about
the store: the ingest pipeline (``ingest``, the layer above the library) decides what to fetch, decodes,
regrids, appends and keeps the per-source state (a JSON dict persisted in the store) that it
hands to ``poll``/``fetch`` so sources can remember ETags or file sizes across restarts.

Failures are reported with the exception types below; the pipeline treats
:class:`NotAvailable` and :class:`NotModified` as normal, :class:`TransientError` as "try
again at the next poll", and a file that fetches but does not decode as bad (quarantined).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd
import xarray as xr

from nowcast.registry import Registry

log = logging.getLogger(__name__)

#: kinds of data a source delivers
RADAR = "radar"
LIGHTNING = "lightning"
KINDS = (RADAR, LIGHTNING)


class SourceError(RuntimeError):
    """Base class of source failures; ``key`` names the item (URL, path) when known."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class NotAvailable(SourceError):
    """The provider does not (or not yet) offer this item (HTTP 404/410, file gone)."""


class NotModified(SourceError):
    """The item did not change since the last fetch (HTTP 304)."""


class TransientError(SourceError):
    """A failure worth retrying at the next poll: timeouts, resets, 5xx, truncated transfers."""


@dataclass(frozen=True)
class Item:
    """One product offered by a source.

    key: unique within the source (URL, relative path, object key).
    time: nominal valid time (UTC, tz-naive) when known before decoding, else None (the
        reader's time is used).
    signature: changes when the content changes (ETag, size+mtime); "" when unknown.
    kind: ``"radar"`` or ``"lightning"``.
    """

    key: str
    time: pd.Timestamp | None = None
    signature: str = ""
    kind: str = RADAR


@dataclass
class Fetched:
    """The content of an item: ``path`` (a local file) or ``dataset`` (frames computed in memory).

    dataset: ``xr.Dataset`` with ``rain_rate`` (y, x) mm/h and optionally ``lightning`` (y, x),
        scalar ``time`` coordinate, CRS attached (see :mod:`nowcast.dims`).
    temporary: ``path`` is a temporary file owned by the pipeline (moved to quarantine or
        deleted after use); otherwise it belongs to the provider and is only copied.
    time: when set, the decoded frame is re-timed to it (replay with shifted timestamps).
    validators: values the source wants remembered for this key (e.g. ETag, Last-Modified).
    """

    item: Item
    path: Path | None = None
    dataset: xr.Dataset | None = None
    temporary: bool = False
    time: pd.Timestamp | None = None
    validators: dict[str, str] = field(default_factory=dict)

    def cleanup(self) -> None:
        """Remove a temporary file (no-op otherwise)."""
        if self.temporary and self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


@runtime_checkable
class Source(Protocol):
    """A live source of radar frames or lightning files."""

    #: instance name (unique within an ingest configuration; keys the store state)
    name: str
    #: ``"radar"`` or ``"lightning"``
    kind: str

    def poll(self, now: pd.Timestamp, since: pd.Timestamp, state: dict[str, Any]) -> list[Item]:
        """Items offered with a time in ``(since, now]`` (or of unknown time), oldest first.

        ``state`` is this source's persisted JSON state; ``poll`` may update it in place.
        """
        ...

    def fetch(self, item: Item, state: dict[str, Any]) -> Fetched:
        """Fetch one item; raises NotAvailable / NotModified / TransientError."""
        ...

    def clock(self, wall: pd.Timestamp) -> pd.Timestamp:
        """The source's notion of "now" for a wall-clock time (a replay runs a simulated clock)."""
        ...

    def close(self) -> None:
        """Release network clients and temporary directories."""
        ...


class SourceBase:
    """Defaults shared by the built-in sources (identity clock, no-op close)."""

    name: str = ""
    kind: str = RADAR

    def clock(self, wall: pd.Timestamp) -> pd.Timestamp:
        return wall

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r})"


#: type name -> factory(name=..., grid=..., cadence=..., **options) -> Source
SOURCES: Registry[Any] = Registry("sources")


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"source kind must be one of {KINDS}, got {kind!r}")
    return kind


def create_source(type_: str, *, name: str | None = None, **options: Any) -> Source:
    """Instantiate the registered source type ``type_`` (e.g. ``"http"``) with ``options``.

    The ingest pipeline passes ``grid`` and ``cadence`` of the store; factories ignore what
    they do not need.
    """
    import nowcast.sources  # noqa: F401  (registers the built-ins)

    factory = SOURCES.get(type_)
    try:
        src = factory(name=name or type_, **options)
    except TypeError as exc:  # unknown / missing option
        raise ValueError(f"source {name or type_!r} (type {type_!r}): {exc}") from exc
    if not isinstance(src, Source):
        raise TypeError(f"source type {type_!r} built {type(src).__name__}, which does not implement Source")
    return src


def slots_between(since: pd.Timestamp, now: pd.Timestamp, cadence: pd.Timedelta) -> pd.DatetimeIndex:
    """Cadence-aligned times in ``(since, now]``, oldest first."""
    first = since.floor(cadence) + cadence
    last = now.floor(cadence)
    if last < first:
        return pd.DatetimeIndex([])
    return pd.date_range(first, last, freq=cadence)


_STRPTIME_RE = {"%Y": r"\d{4}", "%y": r"\d{2}", "%m": r"\d{2}", "%d": r"\d{2}", "%H": r"\d{2}", "%M": r"\d{2}", "%S": r"\d{2}", "%j": r"\d{3}"}


def time_from_name(name: str, time_format: str) -> pd.Timestamp | None:
    """The time in a file name matching ``time_format`` (strptime codes %Y %y %m %d %H %M %S %j,
    other characters literal), or None when the name holds no such time."""
    import re
    from datetime import datetime

    pattern = ""
    i = 0
    while i < len(time_format):
        code = time_format[i : i + 2]
        if code in _STRPTIME_RE:
            pattern += _STRPTIME_RE[code]
            i += 2
        else:
            pattern += re.escape(time_format[i])
            i += 1
    m = re.search(pattern, name)
    if not m:
        return None
    try:
        return pd.Timestamp(datetime.strptime(m.group(0), time_format))
    except ValueError:
        return None
