"""Fixtures of the registry/retrain tests (helpers in registry_helpers.py, the tiny model in
registry_tiny.py; both importable by name from the tests of this directory)."""

from __future__ import annotations

from typing import Any

import pytest
import registry_tiny
from registry_helpers import build_store, make_synthetic_frames


@pytest.fixture(autouse=True)
def _register_test_shift() -> None:
    registry_tiny.register()


@pytest.fixture(scope="session")
def synthetic_frames() -> dict[Any, Any]:
    return make_synthetic_frames()


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory, synthetic_frames: dict[Any, Any]) -> str:
    """11 h of seeded synthetic frames on a 48x48 grid (8 km), 5-min cadence, no gaps."""
    return build_store(str(tmp_path_factory.mktemp("obs") / "obs.zarr"), synthetic_frames)
