"""The API benchmark's parts (load clients, targets) and the README table generated from its results."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_api  # noqa: E402
import render_readme  # noqa: E402


def test_readme_api_table_is_generated_from_the_committed_results() -> None:
    """Fails when benchmarks/api.json changed and the README table was not regenerated (or edited by hand)."""
    doc = json.loads((ROOT / "benchmarks" / "api.json").read_text())
    assert doc["schema"] == bench_api.SCHEMA
    readme = (ROOT / "README.md").read_text()
    assert render_readme.current_section(readme) == render_readme.section(doc), "run: python benchmarks/render_readme.py"


def test_committed_results_cover_every_endpoint_and_level() -> None:
    doc = json.loads((ROOT / "benchmarks" / "api.json").read_text())
    cells = {(r["endpoint"], r["connections"]) for r in doc["rows"]}
    for endpoint in ("tile (cached)", "/v1/point", "/v1/frames", "/v1/forecasts/latest"):
        assert {(endpoint, c) for c in (1, 16, 64)} <= cells, endpoint
    assert ("tile (cold)", 16) in cells
    assert doc["machine"]["loadavg_before"] and doc["machine"]["loadavg_after"]
    for r in doc["rows"]:
        assert r["ratio"] == pytest.approx(r["rps"] / r["ref_rps"], abs=1e-3)
    assert doc["targets"] == bench_api.targets(doc["rows"])


def test_update_readme_rewrites_only_the_marked_section(tmp_path: Path) -> None:
    doc = json.loads((ROOT / "benchmarks" / "api.json").read_text())
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n\n{render_readme.BEGIN}\nold table\n{render_readme.END}\n\nafter\n")
    assert render_readme.update_readme(doc, readme) is True
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "old table" not in text
    assert "| tile (cached) | 64 |" in text
    assert render_readme.update_readme(doc, readme) is False
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="no API benchmark section"):
        render_readme.update_readme(doc, readme)


def test_targets_follow_the_issue() -> None:
    def row(endpoint: str, c: int, ratio: float, p99: float, errors: int = 0) -> dict:
        return {"endpoint": endpoint, "connections": c, "ratio": ratio, "p99_ms": p99, "errors": errors, "non_2xx": 0}

    ok = [row("tile (cached)", 1, 0.1, 500), row("tile (cached)", 16, 0.6, 90), row("tile (cached)", 64, 0.5, 49), row("tile (cold)", 16, 0.01, 149)]
    assert bench_api.targets(ok)["all_met"] is True  # c=1 is not a target
    assert bench_api.targets([*ok, row("/v1/point", 64, 0.7, 51)])["all_met"] is False  # p99 at 64
    assert bench_api.targets([*ok, row("/v1/point", 16, 0.49, 5)])["all_met"] is False  # ratio
    assert bench_api.targets([*ok, row("/v1/point", 16, 0.9, 5, errors=1)])["all_met"] is False
    assert bench_api.targets([row("tile (cold)", 16, 0.01, 151)])["all_met"] is False


@pytest.mark.parametrize("client", ["python", "wrk"])
def test_load_clients_measure_a_live_server(shared_env, live_server, tmp_path: Path, client: str) -> None:  # noqa: ANN001
    if client == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (scripts/install-bench-tools.sh)")
    paths = ["/v1/frames", "/v1/legend/rain", "/v1/tiles/rain/latest/7/67/45.png", "/v1/nope"]
    with live_server(shared_env.app) as url:
        if client == "wrk":
            r = bench_api.run_wrk(url, paths, 2, 1.0, False, tmp_path)
        else:
            r = bench_api.run_python(url, paths, 2, 1.0, False, 2000)
    assert r["requests"] > 20 and r["rps"] > 0
    assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert r["errors"] == 0
    assert r["non_2xx"] == pytest.approx(r["requests"] / 4, abs=3)  # the 404 path, one request in four


def test_serve_settings_reach_the_served_process_and_nothing_else_does(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """``--serve-set NAME=VALUE`` becomes ``NOWCAST_NAME`` for ``nowcast serve`` (so a run can
    measure e.g. ``inference_nice=19``); the caller's own NOWCAST_* variables never leak in, and
    a name that is no service setting is refused before anything starts."""
    seen: dict = {}

    def fake_popen(cmd, cwd, env, stdout, stderr):  # noqa: ANN001, ANN202
        seen.update(env)
        return None

    monkeypatch.setenv("NOWCAST_API_KEY", "from-the-shell")
    monkeypatch.setattr(bench_api.subprocess, "Popen", fake_popen)
    bench_api.start_nowcast(tmp_path, 1234, bench_api.serve_settings(["inference_nice=19"]))
    assert seen["NOWCAST_INFERENCE_NICE"] == "19" and "NOWCAST_API_KEY" not in seen
    with pytest.raises(SystemExit, match="service setting"):
        bench_api.serve_settings(["inference_niceness=19"])
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        bench_api.serve_settings(["inference_nice"])


@pytest.mark.parametrize(
    "name",
    [
        "api-new-data-before.json", "api-new-data-series-prebuild.json", "api-new-data-6c1bf26.json", "api-new-data-stamps-only.json",
        "api-new-data-repeat.json", "api-new-data-4d20ec2.json", "api-new-data-cpu-cuts.json", "api-new-data.json",
    ],
)
def test_committed_new_data_results_are_summarised_from_their_rows(name: str) -> None:
    """The new-data stress benchmark's committed results: every condition measured, interleaved, and
    the summary recomputed from the rows (fails when a figure was edited by hand)."""
    import bench_api_new_data as nd

    doc = json.loads((ROOT / "benchmarks" / name).read_text())
    assert doc["schema"] == nd.SCHEMA and doc["code"]["commit"]
    assert {r["condition"] for r in doc["rows"]} == set(nd.CONDITIONS)
    assert len(doc["rows"]) == doc["reps"] * len(nd.CONDITIONS)
    assert doc["summary"] == nd.summarise(doc["rows"])
    for r in doc["rows"]:
        assert (r["runs_written"] > 0) == (r["condition"] != "none")
        if r["condition"] == "watched":  # (a live frame may land in any level: every 5 minutes)
            assert r["new_data_during_run"], r


def test_new_data_summary_separates_quiet_levels() -> None:
    import bench_api_new_data as nd

    rows = [
        {"condition": c, "p99_ms": p, "rps": 1000.0 + p, "cpu_steal_pct": s, "runs_written": 0 if c == "none" else 9, "non_2xx": 1, "errors": 0}
        for c, p, s in [("none", 20.0, 0.5), ("none", 90.0, 30.0), ("unwatched", 25.0, 1.0), ("watched", 60.0, 2.0), ("watched", 40.0, 4.0), ("watched", 200.0, 25.0)]
    ]
    s = nd.summarise(rows)
    assert s["none"]["median_p99_ms"] == 55.0 and s["none"]["quiet_median_p99_ms"] == 20.0 and s["none"]["quiet_levels"] == 1
    assert s["watched"]["median_p99_ms"] == 60.0 and s["watched"]["quiet_median_p99_ms"] == 50.0
    assert s["watched"]["median_runs_written"] == 9 and s["none"]["median_runs_written"] == 0
    doc = {"code": {"commit": "abc", "dirty": False}, "write_interval_s": 1.0, "reps": 1, "seconds_per_level": 10.0, "connections": 64, "when": "now", "summary": s}
    assert "| run | now | watched | 3 |" in nd.readme_table([("run", doc)])


def test_readme_new_data_table_is_generated_from_the_committed_results() -> None:
    """Fails when the new-data results changed and the README table was not regenerated (or edited by hand)."""
    import bench_api_new_data as nd
    import readme_sections

    runs = nd.readme_runs()
    current = readme_sections.current_section((ROOT / "README.md").read_text(), nd.BEGIN, nd.END)
    assert current == f"{nd.BEGIN}\n{nd.readme_table(runs)}\n{nd.END}", "run: python benchmarks/bench_api_new_data.py --render-readme"
