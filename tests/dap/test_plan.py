"""Plan schema: validation messages, hashing, loading the shipped plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.dap.plan import PlanError, load_plan, plan_hash

REPO = Path(__file__).resolve().parents[2]


def test_defaults_and_hash_is_canonical(tmp_path: Path, plan_dict) -> None:
    d = plan_dict(tmp_path / "s.zarr")
    a = load_plan(data=d)
    assert a.baseline_label == "persistence"
    assert a.splits.gap == "P0DT0H30M0S"  # durations normalised before hashing
    b = load_plan(data={**d, "run": {"workers": 3}})
    assert plan_hash(a) == plan_hash(b)  # execution settings do not change the numbers
    c = load_plan(data=d, overrides=["scores.thresholds=[0.5, 2]"])
    assert plan_hash(c) != plan_hash(a)
    toml = tmp_path / "p.toml"
    toml.write_text(
        f'name = "test-smoke"\nseed = 7\n[data]\nstore = "{tmp_path / "s.zarr"}"\n'
        '[[methods]]\nlabel = "persistence"\nmodel = "persistence"\n'
        '[[methods]]\nlabel = "extrapolation"\nmodel = "extrapolation"\noptions = { n_inputs = 3 }\n'
        "[scores]\nleads = [30, 5, 15]\nthresholds = [5, 1, 0.5]\nfss_thresholds = [1.0]\nfss_scales = [5, 1]\n"
        '[splits]\ngap = "30min"\n[run]\nworkers = 0\n'
    )
    assert plan_hash(load_plan(toml)) == plan_hash(a)  # order-insensitive lists are sorted


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"methods": [{"label": "x", "model": "no-such-model"}]},
            r"unknown method model 'no-such-model'; registered: .*persistence",
        ),
        ({"scores": {"thresholds": [0.5, 1000]}}, r"thresholds \[1000.0\] out of range"),
        ({"scores": {"thresholds": [-1]}}, "out of range"),
        ({"scores": {"leads": [0, 5]}}, r"lead times \[0\] min out of range"),
        ({"splits": {"folds": 1}}, "folds"),
        ({"splits": {"gap": "soon"}}, "cannot read 'soon' as a duration"),
        ({"baseline": "nope"}, "baseline 'nope' is not a method label"),
        (
            {
                "methods": [
                    {"label": "a", "model": "persistence"},
                    {"label": "a", "model": "persistence"},
                ]
            },
            "unique",
        ),
        ({"data": {"store": "x", "start": "2024-01-02", "end": "2024-01-01"}}, "must be after"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_plans_say_what_to_change(
    tmp_path: Path, change: dict, message: str, plan_dict
) -> None:
    with pytest.raises(PlanError, match=message):
        load_plan(data={**plan_dict(tmp_path / "s.zarr"), **change})


@pytest.mark.parametrize("name", ["synthetic-smoke.toml", "real-events.toml"])
def test_shipped_plans_validate(name: str) -> None:
    plan = load_plan(REPO / "plans" / name)
    assert plan.methods and plan.hash() == plan_hash(plan)
