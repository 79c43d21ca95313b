"""Live sources of radar frames and lightning files.

Built-in source types (registered in :data:`SOURCES`; third parties add theirs through the
``nowcast.sources`` entry-point group):

- ``synthetic``: the seeded synthetic radar (:mod:`nowcast.sources.synthetic`), the default;
- ``http``: URL templates / presets fetched with httpx (:mod:`nowcast.sources.http`);
- ``directory``: a drop folder, files taken once complete (:mod:`nowcast.sources.directory`);
- ``replay``: an archive replayed on a simulated clock (:mod:`nowcast.sources.replay`).
"""

from __future__ import annotations

from nowcast.sources.base import (
    KINDS,
    LIGHTNING,
    RADAR,
    SOURCES,
    Fetched,
    Item,
    NotAvailable,
    NotModified,
    Source,
    SourceError,
    TransientError,
    create_source,
)
from nowcast.sources.directory import DirectorySource
from nowcast.sources.http import HttpSource
from nowcast.sources.replay import ReplaySource
from nowcast.sources.synthetic import SyntheticRadar, SyntheticSource

SOURCES.register("synthetic", SyntheticSource, replace=True)
SOURCES.register("http", HttpSource, replace=True)
SOURCES.register("directory", DirectorySource, replace=True)
SOURCES.register("replay", ReplaySource, replace=True)

__all__ = [
    "KINDS",
    "LIGHTNING",
    "RADAR",
    "SOURCES",
    "DirectorySource",
    "Fetched",
    "HttpSource",
    "Item",
    "NotAvailable",
    "NotModified",
    "ReplaySource",
    "Source",
    "SourceError",
    "SyntheticRadar",
    "SyntheticSource",
    "TransientError",
    "create_source",
]
