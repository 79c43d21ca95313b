"""The import layering (README, Architecture): cli -> service | training -> ingest -> nowcast, arrows down only.

The contract lives in pyproject.toml ([tool.importlinter]); ``make lint`` runs ``lint-imports``
on it, and this test runs the same check so that CI (``make test``) fails on a backward import.
"""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_layers_contract_kept(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0

