"""``nowcast retrain``: challenger vs champion on held-out data, promotion rules, skips, failures.

Fast: the tiny ``test-shift`` model (registry_tiny.py) on 11 h of seeded synthetic frames
(48x48 cells); each cycle takes about a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import registry_tiny
from registry_helpers import TIMES, build_store, retrain_settings

from cli import main
from nowcast.model_registry import CorruptModelError, ModelRegistry, RegistryError
from training.retrain import (
    EXIT_SKIPPED,
    RetrainConfig,
    block_bootstrap,
    plan_periods,
    run_retrain,
)


def config(store: str, tmp: Path, **overrides: Any) -> RetrainConfig:
    return RetrainConfig.model_validate(retrain_settings(store, str(tmp / "registry"), tmp, **overrides))


def test_full_cycle_promotes_better_refuses_worse_and_rolls_back(synthetic_store: str, tmp_path: Path) -> None:
    cfg = config(synthetic_store, tmp_path)
    # 1. empty registry: a poor first model (trained on shuffled frames) becomes champion
    r1 = run_retrain(cfg, trainer=registry_tiny.shuffled_fit)
    assert (r1.decision, r1.exit_code) == ("promoted", 0) and "first_champion = always" in r1.reason
    # 2. a properly trained challenger beats it, with an interval that excludes a loss
    r2 = run_retrain(cfg)
    assert r2.decision == "promoted", r2.reason
    comp = r2.comparisons[0]
    assert comp.reference == "champion" and comp.difference > 0 and comp.interval[0] > 0
    assert r2.scores["challenger"]["csi"] > r2.scores["champion"]["csi"]
    assert r2.scores["n_cases"] >= 6 and r2.scores["skipped_cases"] == {"missing_inputs": 0, "missing_observations": 0}
    # 3. a challenger trained on shuffled frames is refused, and the ledger says why
    r3 = run_retrain(cfg, trainer=registry_tiny.shuffled_fit)
    assert (r3.decision, r3.exit_code) == ("kept", 0) and r3.reason.startswith("not better than the champion")
    reg = ModelRegistry(cfg.registry)
    st = reg.status()
    assert st.champion == r2.challenger and st.statuses[r3.challenger] == "candidate" and st.statuses[r1.challenger] == "retired"
    # manifests: data fingerprint, periods, parent (warm start), scores, decision
    m2 = reg.get(r2.challenger).manifest
    assert m2["parent"] == r1.challenger
    assert m2["data"]["train_frames"]["n_frames"] == 48 and len(m2["data"]["train_frames"]["sha256"]) == 64
    assert m2["data"]["periods"]["train"] == r2.periods["train"] and m2["training"] == {"n_windows": 24, "shuffled": False}
    assert m2["evaluation"]["decision"] == "promoted" and m2["evaluation"]["scores"]["challenger"]["csi"] == r2.scores["challenger"]["csi"]
    assert reg.get(r3.challenger).manifest["evaluation"]["decision"] == "kept"
    assert reg.get(r2.challenger).summary()["score"] == {"name": "csi", "value": r2.scores["challenger"]["csi"]}
    ledger = reg.read_ledger()
    assert [(r["decision"], r["challenger"]) for r in ledger] == [
        ("promoted", r1.challenger), ("promoted", r2.challenger), ("kept", r3.challenger)
    ]
    assert ledger[2]["reason"] == r3.reason and ledger[2]["champion_after"] == r2.challenger
    assert ledger[1]["comparisons"][0]["interval"][0] > 0
    # the evaluation period is held out from both models' training and validation windows
    ev0 = pd.Timestamp(r2.periods["eval"][0])
    assert pd.Timestamp(m2["data"]["periods"]["val"][1]) + pd.Timedelta(minutes=60) < ev0
    # 4. rollback: the previous champion serves again
    assert reg.rollback(reason="test").version_id == r1.challenger
    assert not (Path(cfg.registry) / "retrain.lock").exists()


def test_first_champion_must_beat_the_baseline(synthetic_store: str, tmp_path: Path) -> None:
    cfg = config(synthetic_store, tmp_path, evaluation={"first_champion": "beat_baseline"})
    r = run_retrain(cfg, trainer=registry_tiny.shuffled_fit)
    assert r.decision == "kept" and "baseline" in r.reason, r.reason
    assert ModelRegistry(cfg.registry).status().champion is None
    r = run_retrain(cfg)
    assert r.decision == "promoted" and r.reason.startswith("beats the baseline"), r.reason


def test_training_window_without_rain_is_skipped(synthetic_frames: dict, tmp_path: Path) -> None:
    # only the frames the run looks at before it stops: training, validation, the last frame
    def needed(t: pd.Timestamp) -> bool:
        return t.hour < 5 or t.hour == 6 or t == TIMES[-1]

    dry = build_store(str(tmp_path / "dry.zarr"), synthetic_frames, keep=needed, scale=0.0)
    called = []
    cfg = config(dry, tmp_path)
    r = run_retrain(cfg, trainer=lambda *a, **k: called.append(1))
    assert (r.decision, r.exit_code) == ("skipped", EXIT_SKIPPED)
    assert "has no rain to learn from (wet fraction 0.00e+00" in r.reason
    reg = ModelRegistry(cfg.registry)
    assert not called and reg.version_ids() == [] and reg.status().champion is None
    assert reg.read_ledger()[-1]["decision"] == "skipped"


def test_gaps_in_the_evaluation_period(synthetic_frames: dict, synthetic_store: str, tmp_path: Path) -> None:
    # frames 08:30-08:55 missing: the start times that need them are skipped and counted
    gap = (TIMES >= "2026-06-01T08:30") & (TIMES <= "2026-06-01T08:55")
    missing = set(TIMES[gap])
    # (frames before the training period and between validation and evaluation are never read)
    def keep(t: pd.Timestamp) -> bool:
        return t not in missing and t.hour >= 1 and t.hour != 7

    gappy = build_store(str(tmp_path / "gappy.zarr"), synthetic_frames, keep=keep)
    cfg = config(gappy, tmp_path / "a")
    r = run_retrain(cfg)
    sk = r.scores["skipped_cases"]
    assert sk == {"missing_inputs": 3, "missing_observations": 3}  # starts 08:30-08:50; 08:00-08:20
    assert r.scores["n_cases"] + sk["missing_inputs"] + sk["missing_observations"] == 13
    assert r.decision in ("promoted", "kept")
    # too few usable start times: documented skip, the champion is untouched, no new version
    reg = ModelRegistry(cfg.registry)
    champion, n_versions = reg.status().champion, len(reg.version_ids())
    strict = config(gappy, tmp_path / "a", evaluation={"min_cases": 12})
    r = run_retrain(strict)
    assert r.decision == "skipped" and "only 7 usable forecast start times (< min_cases 12" in r.reason, r.reason
    assert reg.status().champion == champion and len(reg.version_ids()) == n_versions


def test_store_errors_and_empty_evaluation(tmp_path: Path) -> None:
    cfg = config(str(tmp_path / "no-store.zarr"), tmp_path)
    r = run_retrain(cfg)
    assert r.decision == "failed" and "no observation store found" in r.reason and r.exit_code == 1


def test_champion_trained_on_the_evaluation_period_is_skipped(synthetic_store: str, tmp_path: Path) -> None:
    cfg = config(synthetic_store, tmp_path)
    assert run_retrain(cfg).decision == "promoted"
    # the champion validated on 06:00-06:55 (+60 min of targets); evaluating from 07:30 would reuse them
    earlier = config(synthetic_store, tmp_path, window={"end": "2026-06-01T09:00", "train_hours": 2, "val_hours": 0.5, "eval_hours": 1.5})
    r = run_retrain(earlier)
    assert r.decision == "skipped" and "no evaluation period held out from both models" in r.reason


def test_second_job_is_refused_while_the_lock_is_held(synthetic_store: str, tmp_path: Path) -> None:
    cfg = config(synthetic_store, tmp_path)
    reg = ModelRegistry.create(cfg.registry)
    with reg.lock(owner="other job"):
        r = run_retrain(cfg, trainer=lambda *a, **k: pytest.fail("must not train"))
    assert (r.decision, r.exit_code) == ("skipped", EXIT_SKIPPED) and "held by other job" in r.reason


def test_corrupt_champion_fails_without_promotion(synthetic_store: str, tmp_path: Path) -> None:
    cfg = config(synthetic_store, tmp_path)
    first = run_retrain(cfg, trainer=registry_tiny.shuffled_fit).challenger
    (Path(cfg.registry) / "versions" / first / "checkpoint").write_text("{}")
    with pytest.raises(CorruptModelError, match="is corrupt"):
        run_retrain(cfg)
    reg = ModelRegistry(cfg.registry)
    assert reg.status().champion == first
    assert reg.read_ledger()[-1]["decision"] == "failed" and "corrupt" in reg.read_ledger()[-1]["reason"]
    assert not (Path(cfg.registry) / "retrain.lock").exists()


def test_missing_or_read_only_registry(synthetic_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(synthetic_store, tmp_path, create_registry=False)
    with pytest.raises(RegistryError, match="no model registry found"):
        run_retrain(cfg)
    ModelRegistry.create(cfg.registry)
    from nowcast import durability

    def denied(*a: object, **k: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(durability, "write_atomic", denied)
    with pytest.raises(RegistryError, match="registry is not writable"):
        run_retrain(cfg, trainer=lambda *a, **k: pytest.fail("must not train"))


def test_retrain_command(synthetic_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = retrain_settings(synthetic_store, str(tmp_path / "registry"), tmp_path)
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for k, v in settings.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines.extend(f"{kk} = {json.dumps(vv)}" for kk, vv in v.items())
    path = tmp_path / "retrain.toml"
    path.write_text("\n".join(lines) + "\n")
    assert main(["retrain", "--config", str(path), "--set", "trainer=registry_tiny:shuffled_fit", "--no-progress"]) == 0
    assert ": promoted " in capsys.readouterr().out
    assert main(["retrain", "--config", str(path), "--no-progress", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "promoted" and out["comparisons"][0]["reference"] == "champion"
    assert main(["models", "--registry", str(tmp_path / "registry"), "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 3 and "champion" in listing[2] and "csi 0." in listing[2] and listing[2].endswith(out["champion_before"])
    # invalid configuration: exit 2 before any work, the message names the bad key
    assert main(["retrain", "--config", str(path), "--set", "evaluation.score=rmse"]) == 2
    assert "evaluation.score" in capsys.readouterr().err
    assert main(["retrain", "--config", str(path), "--set", "trainer=nope:fit"]) == 2
    assert "trainer 'nope:fit' cannot be imported" in capsys.readouterr().err
    # missing registry: exit 1 with one line
    assert main(["retrain", "--config", str(path), "--set", f"registry={tmp_path / 'none'}", "--set", "create_registry=false"]) == 1
    assert "no model registry found" in capsys.readouterr().err
    # lock held: exit 3
    with ModelRegistry(str(tmp_path / "registry")).lock(owner="cron #2"):
        assert main(["retrain", "--config", str(path), "--no-progress"]) == EXIT_SKIPPED
    assert "held by cron #2" in capsys.readouterr().err


def test_periods_do_not_overlap() -> None:
    cfg = RetrainConfig.model_validate({"store": "s", "registry": "r", "nowcaster": "x", "model": {"n_inputs": 4, "n_leads": 12}})
    p = plan_periods(cfg, pd.Timestamp("2026-06-03T00:00"), pd.Timedelta("5min"), 4, 12)
    cad = pd.Timedelta("5min")
    assert p.eval[1] == pd.Timestamp("2026-06-02T23:00")  # + 60 min of verifying frames = end
    assert p.eval[0] - 3 * cad - (p.val[1] + 12 * cad) >= cad  # first eval input after last val target
    assert p.val[0] - 3 * cad - (p.train[1] + 12 * cad) >= cad
    assert p.train[1] - p.train[0] == pd.Timedelta(hours=48) - cad


def test_block_bootstrap_interval() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    n = 40
    base = rng.integers(50, 100, size=(n, 4))
    better = base.copy()
    better[:, 0] += 20  # more hits, same misses/false alarms
    blocks = np.arange(n) // 4
    d, (lo, hi) = block_bootstrap(better, base, blocks, "csi", 500, 0.9, seed=1)
    assert d > 0 and 0 < lo <= d <= hi
    d, (lo, hi) = block_bootstrap(base, base, blocks, "csi", 500, 0.9, seed=1)
    assert d == 0 and lo == hi == 0
