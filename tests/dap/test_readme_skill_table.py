"""The README's real-data skill section is generated from the committed event-DAP results."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench_scripts import load_script


def _renderer():  # noqa: ANN202
    return load_script("render_skill")


def test_readme_skill_section_matches_the_committed_results() -> None:
    mod = _renderer()
    assert mod.RESULTS.is_file(), f"{mod.RESULTS} must be committed (python -m training.dap.events --plan plans/real-events-kfold-sprog-2kmcuts.toml)"
    assert mod.main(["--check"]) == 0, "README skill section is stale: run python benchmarks/render_skill.py"


def test_a_changed_result_makes_the_section_stale(tmp_path: Path) -> None:
    mod = _renderer()
    doc = json.loads(mod.RESULTS.read_text())
    cls = next(iter(doc["classes"]))
    method = next(iter(doc["classes"][cls]["scores"]))
    doc["classes"][cls]["scores"][method]["csi"][0][0] += 0.1
    other = tmp_path / "results.json"
    other.write_text(json.dumps(doc))
    assert mod.main(["--check", "--results", str(other)]) == 1
