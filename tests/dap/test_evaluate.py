"""End-to-end DAP evaluation on a tiny synthetic store: outputs, masking, ledger, verify, CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cli import main
from training.dap.ledger import Ledger
from training.dap.plan import PlanError, load_plan
from training.dap.runner import evaluate, prepare
from training.dap.verify import verify


@pytest.fixture(scope="module")
def run(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory, smoke_plan_module):
    out = tmp_path_factory.mktemp("eval") / "out"
    plan = load_plan(data=smoke_plan_module(tiny_store))
    return evaluate(plan, out, plan_path="in-test")


def test_outputs_exist_and_carry_the_plan_hash(run) -> None:
    ph = run.plan_hash
    ds = xr.open_dataset(run.results_nc)
    assert ds.attrs["plan_hash"] == ph
    assert set(ds["csi"].dims) == {"method", "lead_time", "threshold", "split"}
    assert set(ds["fss"].dims) == {"method", "lead_time", "fss_threshold", "scale", "split"}
    assert list(ds["method"].values) == ["persistence", "extrapolation"]
    assert ds.sizes["split"] == 2 and ds.sizes["lead_time"] == 3 and ds.sizes["threshold"] == 3
    js = json.loads(run.results_json.read_text())
    assert js["attrs"]["plan_hash"] == ph and js["coords"]["lead_time"]["data"] == [5.0, 15.0, 30.0]
    html = run.report.read_text()
    assert ph in html and "cdn" not in html.lower() and "<script" not in html
    for section in (
        "Data used",
        "Paired difference against persistence",
        "Example forecasts",
        "Lightning",
        "Ledger summary",
        "<h2>Plan</h2>",
    ):
        assert section in html, section
    for img in (
        "skill_csi.png",
        "skill_mcc.png",
        "skill_fss.png",
        "lightning.png",
        "example_split000.png",
    ):
        p = run.report.parent / img
        assert p.stat().st_size > 1000 and f"src='{img}'" in html
        assert ph.encode() in p.read_bytes()  # PNG text chunk carries the hash
    for rec in Ledger(run.ledger).records():
        assert rec["plan_hash"] == ph


def test_scores_come_from_the_pooled_tables(run) -> None:
    ds = run.results
    h, m, f = (ds[k].astype(float) for k in ("hits", "misses", "false_alarms"))
    np.testing.assert_allclose(ds["csi"].values, (h / (h + m + f)).values, equal_nan=True)
    # persistence is the baseline: its paired differences are 0 and it never beats itself
    p = ds["csi_paired"].sel({"method": "persistence"})
    assert np.nanmax(np.abs(p.sel(paired="diff").values)) == 0 and p.sel(paired="wins").max() == 0
    s = ds["csi_summary"].sel({"method": "extrapolation"})
    mean = ds["csi"].sel({"method": "extrapolation"}).mean("split")
    np.testing.assert_allclose(s.sel(stat="mean").values, mean.values)
    ok = np.isfinite(s.sel(stat="lo").values)
    assert ok.any() and np.all(s.sel(stat="lo").values[ok] <= s.sel(stat="hi").values[ok])
    # skill decays with lead time for persistence at the lowest threshold
    c = ds["csi_summary"].sel({"method": "persistence", "stat": "mean", "threshold": 0.5}).values
    assert c[0] > c[-1]


def test_ledger_records_every_step(run) -> None:
    recs = list(Ledger(run.ledger).records())
    assert [r["event"] for r in recs] == ["plan", "split", "split", "summary"]
    plan = recs[0]
    assert (
        plan["code_version"]["package"]
        and "numpy" in plan["packages"]
        and plan["device"]["requested"] == "cpu"
    )
    for r in recs[1:3]:
        assert len(r["data_fingerprint"]) == 64 and r["seed"] > 0 and r["timings"]["total_s"] > 0
        assert set(r["states"]) == {"persistence", "extrapolation"}
    assert recs[1]["data_fingerprint"] != recs[2]["data_fingerprint"]


def test_verify_identical_then_tampered(
    run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--verify", str(run.ledger), "--split", "1"]) == 0
    assert "identical" in capsys.readouterr().out
    lines = run.ledger.read_text().splitlines()
    tampered = tmp_path / "ledger.jsonl"
    recs = [json.loads(x) for x in lines]
    recs[2]["states"]["extrapolation"]["rain"]["hits"]["data"][0] += 1
    tampered.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    res = verify(tampered, 1)
    assert not res.identical and res.differences == ["extrapolation: rain.hits"]
    assert main(["evaluate", "--verify", str(tampered), "--split", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "DIFFERS" in err and "rain.hits" in err
    assert main(["evaluate", "--verify", str(tampered), "--split", "9"]) == 2
    assert "recorded splits: [0, 1]" in capsys.readouterr().err


def test_no_coverage_is_masked_not_dry(tmp_path: Path, make_store, plan_dict) -> None:
    n, bad = 24, 6
    events = (("2024-06-01T10:00", 12), ("2024-06-01T12:00", 12))
    store = make_store(tmp_path / "m.zarr", events=events, n=n, no_coverage_rows=bad)
    d = plan_dict(store)
    d["methods"] = [{"label": "persistence", "model": "persistence"}]
    d["scores"] = {**d["scores"], "leads": [5, 10]}
    out = evaluate(load_plan(data=d), tmp_path / "out", report=False)
    ds = out.results
    total = sum(ds[k] for k in ("hits", "misses", "false_alarms", "correct_negatives"))
    n_fc = sum(
        r["n_forecasts"]
        for r in (json.loads(x) for x in out.ledger.read_text().splitlines())
        if r["event"] == "split"
    )
    # every split/lead/threshold counted exactly the covered cells of every forecast
    assert int(total.sum("split").isel(threshold=0, lead_time=0).item()) == (n - bad) * n * n_fc


def test_cli_runs_a_plan_file(
    tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "p.toml"
    plan.write_text(
        f'name = "cli"\n[data]\nstore = "{tiny_store}"\n[[methods]]\nlabel = "p"\nmodel = "persistence"\n'
        "[scores]\nleads = [5, 10]\nthresholds = [1]\nfss_scales = [1]\nlightning = false\n[splits]\nfolds = 3\n"
    )
    out = tmp_path / "o"
    assert (
        main(
            [
                "evaluate",
                "--plan",
                str(plan),
                "--out",
                str(out),
                "--no-report",
                "--set",
                "splits.folds=2",
            ]
        )
        == 0
    )
    assert "2 splits" in capsys.readouterr().out
    assert (out / "results.nc").is_file() and not (out / "report").exists()


def _fails_before_work(plan: dict, tmp_path: Path, message: str) -> None:
    out = tmp_path / "never"
    with pytest.raises(PlanError, match=message):
        evaluate(load_plan(data=plan), out)
    assert not out.exists()  # nothing was written


def test_too_few_blocks_fails_before_any_work(plan_dict, tiny_store: Path, tmp_path: Path) -> None:
    plan = plan_dict(tiny_store)
    plan["splits"] = {**plan["splits"], "folds": 4}
    _fails_before_work(plan, tmp_path, "at least 4 blocks for 4 folds but the data has 3")


def test_store_without_the_period_fails_before_any_work(
    plan_dict, tiny_store: Path, tmp_path: Path
) -> None:
    plan = plan_dict(tiny_store)
    plan["data"] = {
        "store": str(tiny_store),
        "start": "2024-05-01T00:00",
        "end": "2024-06-01T12:00",
    }
    _fails_before_work(
        plan, tmp_path, r"covers 2024-06-01T10:00:00 .. 2024-06-01T16:55:00 but the plan asks"
    )
    plan["data"] = {"store": str(tmp_path / "missing.zarr")}
    _fails_before_work(plan, tmp_path, "cannot be opened")


def test_leads_off_the_cadence_and_bad_crop_fail(
    plan_dict, tiny_store: Path, tmp_path: Path
) -> None:
    plan = plan_dict(tiny_store)
    plan["scores"] = {**plan["scores"], "leads": [7]}
    _fails_before_work(plan, tmp_path, "not a multiple of the store cadence")
    plan = plan_dict(tiny_store)
    plan["data"] = {"store": str(tiny_store), "rows": [0, 999]}
    _fails_before_work(plan, tmp_path, r"data.rows \[0, 999\] exceeds the grid")


def test_cli_bad_plan_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "bad.toml"
    plan.write_text(
        'name = "bad"\n[data]\nstore = "x"\n[[methods]]\nlabel = "a"\nmodel = "magic"\n'
    )
    assert main(["evaluate", "--plan", str(plan)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown method model 'magic'" in err


def test_prepare_geometry_uses_the_longest_history(plan_dict, tiny_store: Path) -> None:
    p = prepare(load_plan(data=plan_dict(tiny_store)))
    assert p.geometry.n_in == 3 and p.geometry.n_out == 6 and p.lead_steps == (1, 3, 6)
    assert len(p.blocks) == 3 and len(p.splits) == 2
