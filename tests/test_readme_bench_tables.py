"""The README's benchmark figures (store, ingest, forecast wall time, training) are generated from the committed results."""

from __future__ import annotations

import copy
import json

from tests.bench_scripts import load_script


def _renderer():  # noqa: ANN202
    return load_script("render_bench")


def test_readme_benchmark_figures_match_the_committed_results() -> None:
    mod = _renderer()
    assert mod.main(["--check"]) == 0, "README benchmark figures are stale: run python benchmarks/render_bench.py"


def test_a_changed_timing_changes_the_table() -> None:
    mod = _renderer()
    doc = json.loads(mod.RESULTS.read_text())
    changed = copy.deepcopy(doc)
    row = next(r for r in changed["benchmarks"]["models"]["rows"] if r["model"] == "convlstm")
    row["forecast_s"] *= 2
    assert mod.section(changed) != mod.section(doc)
    assert "ConvLSTM / S-PROG" in mod.section(doc)
    for name in [n for n in mod.SECTIONS if n != "models"]:  # every section changes with its figures
        bench = changed["benchmarks"][mod.SECTIONS[name][0]]
        for row in bench["rows"]:
            for key, value in row.items():
                if isinstance(value, float):
                    row[key] = value * 3 + 1
        assert mod.section(changed, name) != mod.section(doc, name)
