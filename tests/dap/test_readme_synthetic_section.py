"""The README's synthetic-domain section is generated from the committed card, DAP summary and hot-path result."""

from __future__ import annotations

import json

from tests.bench_scripts import load_script


def _renderer():  # noqa: ANN202
    return load_script("render_synthetic_skill")


def test_readme_synthetic_section_matches_the_committed_results() -> None:
    mod = _renderer()
    for f in (mod.CARD, mod.SUMMARY, mod.HOT_PATH):
        assert f.is_file(), f"{f} must be committed"
    assert mod.main(["--check"]) == 0, "README synthetic section is stale: run python benchmarks/render_synthetic_skill.py"


def test_a_changed_result_changes_the_section() -> None:
    mod = _renderer()
    card, summary, hot = (json.loads(f.read_text()) for f in (mod.CARD, mod.SUMMARY, mod.HOT_PATH))
    before = mod.section(card, summary, hot)
    hot["api_seconds_max"] += 1.0
    assert mod.section(card, summary, hot) != before
    summary["targets"]["max_reliability_error"]["value"] += 0.01
    assert mod.section(card, summary, hot) != mod.section(card, json.loads(mod.SUMMARY.read_text()), hot)
