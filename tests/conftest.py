"""Shared fixtures: where the real data lives, temporary stores, seeded synthetic frames."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ../shared/data relative to the repository root (override with NOWCAST_SHARED_DATA)
SHARED_DATA = Path(os.environ.get("NOWCAST_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
RADAR_DATA = SHARED_DATA / "radar"
LIGHTNING_DATA = SHARED_DATA / "lightning"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; skips the calling test with a reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (see ../shared/data/DATA.md)")
    return p


@pytest.fixture
def shared_data() -> Path:
    return shared_path()


@pytest.fixture(autouse=True)
def _quiet_pysteps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYSTEPS_SILENT_IMPORT", "1")
