"""Fixtures for the DAP harness: a tiny seeded synthetic observation store and its plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.dap.synthetic import DEFAULT_EVENTS, build_synthetic_store


def build_store(
    path: Path,
    events=DEFAULT_EVENTS,
    n: int = 40,
    seed: int = 3,
    holes: tuple[str, ...] = (),
    no_coverage_rows: int = 0,
) -> Path:
    """A synthetic store on an ``n x n`` 2-km grid holding the frames of ``events``."""
    return build_synthetic_store(
        path, events, size=n, seed=seed, holes=holes, no_coverage_rows=no_coverage_rows
    )


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("dap") / "tiny.zarr")


def smoke_plan(store: Path, **over) -> dict:
    """A small plan dict: persistence vs extrapolation, 2 folds x 1 repetition, 3 leads."""
    plan = {
        "name": "test-smoke",
        "data": {"store": str(store)},
        "methods": [
            {"label": "persistence", "model": "persistence"},
            {"label": "extrapolation", "model": "extrapolation", "options": {"n_inputs": 3}},
        ],
        "scores": {
            "leads": [5, 15, 30],
            "thresholds": [0.5, 1, 5],
            "fss_thresholds": [1.0],
            "fss_scales": [1, 5],
        },
        "splits": {"block": "gap", "gap": "30min", "folds": 2, "repetitions": 1},
        "seed": 7,
        "run": {"workers": 0},
    }
    for k, v in over.items():
        plan[k] = v
    return plan


@pytest.fixture
def make_store():
    """The :func:`build_store` helper (test modules cannot import conftest)."""
    return build_store


@pytest.fixture
def plan_dict():
    """The :func:`smoke_plan` helper."""
    return smoke_plan


@pytest.fixture(scope="module")
def smoke_plan_module():
    """:func:`smoke_plan` for module-scoped fixtures."""
    return smoke_plan
