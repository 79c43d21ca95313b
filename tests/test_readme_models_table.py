"""The README's forecast wall-time table is generated from the committed benchmark results."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _renderer():
    spec = importlib.util.spec_from_file_location("render_models", ROOT / "benchmarks" / "render_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_models_table_matches_the_committed_results() -> None:
    mod = _renderer()
    assert mod.main(["--check"]) == 0, "README forecast wall-time table is stale: run python benchmarks/render_models.py"


def test_a_changed_timing_changes_the_table() -> None:
    mod = _renderer()
    doc = json.loads(mod.RESULTS.read_text())
    changed = copy.deepcopy(doc)
    row = next(r for r in changed["benchmarks"]["models"]["rows"] if r["model"] == "convlstm")
    row["forecast_s"] *= 2
    assert mod.section(changed) != mod.section(doc)
    assert "ConvLSTM / S-PROG" in mod.section(doc)
