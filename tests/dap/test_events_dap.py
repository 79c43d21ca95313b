"""The event-blocked DAP (training.dap.events), the event catalogue and the scoring kernel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nowcast import evaluation
from nowcast.metrics import ContingencyTable
from training.dap.events import (
    EventPlan,
    EventRunner,
    assign_folds,
    choose_validation,
    subsample_training,
)
from training.events import Catalogue, EventSpec

START = pd.Timestamp("2024-06-01T12:00")


def _events(n2: int = 3, n240: int = 3) -> list[EventSpec]:
    return [EventSpec(name=f"a{i}", resolution_class="2km", paths=["x"]) for i in range(n2)] + [
        EventSpec(name=f"b{i}", resolution_class="240m", paths=["x"]) for i in range(n240)
    ]


def test_every_event_is_held_out_exactly_once_per_repetition() -> None:
    events = _events(5, 4)
    for seed in (0, 1):
        folds = assign_folds(events, ["2km", "240m"], 3, seed)
        flat = [e for f in folds for e in f]
        assert sorted(flat) == sorted(e.name for e in events)
        for f in folds:  # stratified: each fold holds events of both classes
            assert any(n.startswith("a") for n in f) and any(n.startswith("b") for n in f)
    assert assign_folds(events, ["2km", "240m"], 3, 0) == assign_folds(events, ["2km", "240m"], 3, 0)
    assert assign_folds(events, ["2km", "240m"], 3, 0) != assign_folds(events, ["2km", "240m"], 3, 1)
    with pytest.raises(ValueError, match="fewer than 6 folds"):
        assign_folds(events, ["2km"], 6, 0)


def test_validation_events_come_from_the_training_events() -> None:
    events = _events(4, 4)
    val = choose_validation(events[1:], ["2km", "240m"], 1, 0)
    assert len(val) == 2 and "a0" not in val
    with pytest.raises(ValueError, match="cannot spare"):
        choose_validation(events[:1], ["2km"], 1, 0)


def test_validation_events_share_the_models_cadence() -> None:
    """Cuts are fitted per lead step: a 15-minute event must not set a 5-minute step's cut."""
    events = [EventSpec(name=f"slow{i}", resolution_class="2km", paths=["x"], cadence="15min") for i in range(5)]
    events += [EventSpec(name="five0", resolution_class="2km", paths=["x"]), EventSpec(name="five1", resolution_class="2km", paths=["x"])]
    for seed in range(10):
        assert choose_validation(events, ["2km"], 1, seed)[0].startswith("five")
    with pytest.raises(ValueError, match="at cadence 5min cannot spare 2"):
        choose_validation(events, ["2km"], 2, 0)


def test_learning_curve_keeps_a_nested_seeded_share_of_each_class() -> None:
    events = _events(5, 8)
    classes = ["2km", "240m"]
    everything = subsample_training(events, classes, 1.0, 0)
    assert everything == sorted(e.name for e in events)
    half, quarter = subsample_training(events, classes, 0.5, 3), subsample_training(events, classes, 0.25, 3)
    assert sum(n.startswith("a") for n in half) == 3 and sum(n.startswith("b") for n in half) == 4  # round(2.5) = 3, 4
    assert sum(n.startswith("a") for n in quarter) == 1 and sum(n.startswith("b") for n in quarter) == 2
    assert set(quarter) <= set(half)  # a learning curve adds events, it does not swap them
    tiny = subsample_training(events, classes, 0.01, 3)
    assert sum(n.startswith("a") for n in tiny) == 1 and sum(n.startswith("b") for n in tiny) == 1  # never an empty class
    assert subsample_training(events, classes, 0.5, 3) == half
    assert any(subsample_training(events, classes, 0.5, s) != half for s in range(4, 10))


def test_learning_curve_plan_changes_only_the_training_events() -> None:
    """Test and validation events, seeds and folds are those of the full plan, so its held-out
    tables pair with the full plan's; the training events are the seeded share."""
    from types import SimpleNamespace

    events = _events(8, 11)
    full = EventPlan(name="full", splits={"folds": 3, "repetitions": 2})
    half = full.model_copy(update={"splits": full.splits.model_copy(update={"train_fraction": 0.5})})
    runner = lambda plan: SimpleNamespace(plan=plan, events=events, train_options={})  # noqa: E731
    for a, b in zip(EventRunner.fold_plan(runner(full)), EventRunner.fold_plan(runner(half)), strict=True):
        assert {k: v for k, v in a.items() if k != "train"} == {k: v for k, v in b.items() if k != "train"}
        assert set(b["train"]) < set(a["train"]) and not set(b["train"]) & set(b["validation"] + b["test"])
        for cls in ("a", "b"):
            n_full = sum(n.startswith(cls) for n in a["train"])
            assert sum(n.startswith(cls) for n in b["train"]) == max(1, int(np.floor(0.5 * n_full + 0.5)))
    with pytest.raises(ValueError):
        EventPlan(name="bad", splits={"train_fraction": 0.0})


def test_catalogue_rejects_duplicates_and_bad_cadence() -> None:
    with pytest.raises(ValueError, match="duplicate event names"):
        Catalogue(event=[EventSpec(name="a", resolution_class="2km", paths=["x"])] * 2)
    with pytest.raises(ValueError, match="not a duration"):
        EventSpec(name="a", resolution_class="2km", paths=["x"], cadence="soon")


def test_pooling_by_minutes_respects_each_events_cadence() -> None:
    t5 = ContingencyTable.init([1.0], 3)
    t10 = ContingencyTable.init([1.0], 3)
    t5.hits[:] = [[1], [2], [3]]
    t10.hits[:] = [[10], [20], [30]]
    counts = evaluation.tables_dataset({("m", "five"): t5, ("m", "ten"): t10}, {"five": 5.0, "ten": 10.0})
    pooled = evaluation.pool_by_minutes(counts, [5, 10, 15, 20, 30])
    # 5 min: only the 5-min event (step 1); 10 min: 5-min step 2 + 10-min step 1; 20: 10-min step 2
    np.testing.assert_array_equal(pooled["hits"].sel({"method": "m"}).values[:, 0], [1, 2 + 10, 3, 20, 30])


@pytest.fixture(scope="module")
def event_stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small synthetic 'events' (two per class), one store each, different days and seeds."""
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore

    root = tmp_path_factory.mktemp("events")
    for i, (name, cls) in enumerate([("a0", "2km"), ("a1", "2km"), ("a2", "2km"), ("b0", "240m"), ("b1", "240m"), ("b2", "240m")]):
        src = SyntheticRadar(SyntheticRadar.default_grid(nx=48, ny=48), seed=20 + i)
        url = root / "stores" / cls / f"{name}.zarr"
        url.parent.mkdir(parents=True, exist_ok=True)
        store = ObservationStore.create(str(url), src.grid, cadence=pd.Timedelta("5min"))
        for t in pd.date_range(START + pd.Timedelta(days=i), periods=16, freq="5min"):
            f = src.frame(t)
            store.append(f["rain_rate"], lightning=f["lightning"])
    cat = root / "catalogue.toml"
    lines = [f'data_root = "{root}"', f'store_root = "{root / "stores"}"']
    for name, cls in [("a0", "2km"), ("a1", "2km"), ("a2", "2km"), ("b0", "240m"), ("b1", "240m"), ("b2", "240m")]:
        lines += ["[[event]]", f'name = "{name}"', f'class = "{cls}"', 'paths = ["none"]']
    cat.write_text("\n".join(lines) + "\n")
    train = root / "train.toml"
    train.write_text(
        "[model]\nn_inputs = 3\nn_leads = 4\nchannels = [4, 8]\nkernels = [3, 3]\nstrides = [2, 2]\nstem_channels = 4\n"
        'advection = "residual"\nresidual_zero_init = true\nlightning = false\nprobability_thresholds = [0.5, 1.0, 5.0]\nguide_smoothing = [2.0]\n'
        "[train]\nepochs = 1\nbatch_size = 4\nlr = 3e-3\ncrop_size = 32\nval_crop_size = 32\nmin_wet_fraction = 0.001\nsamples_per_epoch = 4\n"
        f'progress = false\ncache_dir = "{root / "cache"}"\n'
    )
    return root


def _tiny_plan(event_stores: Path, name: str, baselines: list[str], repetitions: int, **fields: object) -> EventPlan:
    """A 3-fold plan over the tiny event stores, 4 leads, scored at 1 mm/h; ``fields``: other plan fields."""
    return EventPlan(
        name=name, catalogue=str(event_stores / "catalogue.toml"), train_config=str(event_stores / "train.toml"),
        baselines=baselines, threads=1, **fields,
        splits={"folds": 3, "repetitions": repetitions, "validation_events": 1},
        scores={"thresholds": [1.0], "n_leads": 4, "report_minutes": [5, 10, 20], "n_inputs": 3, "start_stride": 3, "bootstrap": 100},
    )


def test_unsatisfiable_plan_fails_before_any_work(event_stores: Path, tmp_path: Path) -> None:
    plan = EventPlan(name="bad", catalogue=str(event_stores / "catalogue.toml"), train_config=str(event_stores / "train.toml"), splits={"folds": 2})
    with pytest.raises(ValueError, match="cannot spare 1 for validation"):
        EventRunner(plan, tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()


def test_event_plan_runs_end_to_end_and_resumes(event_stores: Path, tmp_path: Path) -> None:
    plan = _tiny_plan(event_stores, "tiny", ["persistence", "extrapolation"], repetitions=1)
    out = tmp_path / "run"
    summary = EventRunner(plan, out, progress=False).run()
    records = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["plan", "split", "split", "split", "summary"]
    assert {r["plan_hash"] for r in records} == {summary["plan_hash"]}
    tested = sorted(e for r in records if r["event"] == "split" for e in r["test"])
    assert tested == ["a0", "a1", "a2", "b0", "b1", "b2"]  # every event held out exactly once
    for r in records[1:4]:
        assert not set(r["test"]) & set(r["train"] + r["validation"])
    counts = xr.load_dataset(out / "results.nc")
    assert set(counts["method"].values) == {"persistence", "extrapolation", "convlstm"}
    assert (counts["hits"].values >= 0).all()  # every (method, event) scored
    entry = summary["classes"]["2km"]
    assert set(entry["scores"]) == {"persistence", "extrapolation", "convlstm"}
    assert "csi:convlstm-sprog" not in entry.get("intervals", {})  # no S-PROG in this plan: no paired interval
    for name in ("report.md", "skill.png", "results.json"):
        assert (out / name).stat().st_size > 0
    # a rerun reuses every checkpoint and table: no retraining
    best = sorted((out / "folds").glob("*/best.pt"))
    stamps = [p.stat().st_mtime_ns for p in best]
    again = EventRunner(plan, out, progress=False).run()
    assert [p.stat().st_mtime_ns for p in best] == stamps
    assert again["first_run_wall_seconds"] == summary["wall_seconds"] == summary["first_run_wall_seconds"]


def test_repeated_plan_pools_repetitions_and_its_median_ensemble_is_scored(event_stores: Path, tmp_path: Path) -> None:
    from training.dap.ensemble import EnsembleError, run_ensemble

    plan = _tiny_plan(event_stores, "tiny-repeated", ["persistence"], repetitions=3)
    out = tmp_path / "run"
    with pytest.raises(EnsembleError, match="not a finished fold"):
        run_ensemble(plan, out, tmp_path / "early", progress=False)
    summary = EventRunner(plan, out, progress=False).run()
    counts = xr.load_dataset(out / "results.nc")
    reps = ["convlstm-r0", "convlstm-r1", "convlstm-r2"]
    assert set(counts["method"].values) == {"persistence", "convlstm", *reps}
    for c in evaluation.COUNTS:  # the pooled ConvLSTM is exactly the sum of its repetitions
        per_rep = counts[c].sel({"method": reps}).values
        assert (per_rep >= 0).all()
        np.testing.assert_array_equal(counts[c].sel({"method": "convlstm"}).values, per_rep.sum(0))
    entry = summary["classes"]["2km"]
    assert set(entry["scores"]) == {"persistence", "convlstm"}  # repetitions are a spread, not table rows
    assert set(entry["repetitions"]) == set(reps)

    ens_summary = run_ensemble(plan, out, out / "ensemble-median", progress=False)
    ledger = [json.loads(line) for line in (out / "ensemble-median" / "ledger.jsonl").read_text().splitlines()]
    members = ledger[0]["members"]
    splits = [r for r in (json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()) if r["event"] == "split"]
    for event, ms in members.items():  # each event's members: the 3 models that held it out, one per repetition
        held_out_by = sorted(f"r{r['repetition']}-f{r['fold']}" for r in splits if event in r["test"])
        assert sorted(Path(m["checkpoint"]).parent.name for m in ms) == held_out_by
        assert {h[:2] for h in held_out_by} == {"r0", "r1", "r2"}
    ens = xr.load_dataset(out / "ensemble-median" / "results.nc")
    assert set(ens["method"].values) == {"persistence", "convlstm"} and (ens["hits"].values >= 0).all()
    for c in evaluation.COUNTS:  # same start times: the baselines are the plan run's own counts
        np.testing.assert_array_equal(ens[c].sel({"method": "persistence"}).values, counts[c].sel({"method": "persistence"}).values)
    assert set(ens_summary["classes"]["2km"]["scores"]) == {"persistence", "convlstm"}
    two = plan.model_copy(update={"splits": plan.splits.model_copy(update={"repetitions": 2})})
    with pytest.raises(EnsembleError, match="odd number"):
        run_ensemble(two, out, tmp_path / "two", progress=False)
    assert not (tmp_path / "two").exists()


def test_repetition_table_shows_each_repetitions_difference_to_sprog() -> None:
    from training.dap.events import class_tables

    def row(v: float) -> dict[str, list[list[float]]]:
        return {k: [[v], [v]] for k in ("csi", "mcc", "pod", "far", "bias")}

    summary = {"minutes": [5, 10], "thresholds": [1.0], "classes": {"2km": {
        "events": ["e"], "scores": {"convlstm": row(0.5), "sprog": row(0.4)},
        "repetitions": {"convlstm-r0": row(0.45), "convlstm-r1": row(0.38)}}}}
    text = "\n".join(class_tables(summary, "2km"))
    assert "each of the 2 repetitions" in text
    assert "| CSI 1 mm/h | r0 | +0.050 | +0.050 |" in text
    assert "| MCC 1 mm/h | r1 | -0.020 | -0.020 |" in text
    del summary["classes"]["2km"]["repetitions"]
    assert "repetitions alone" not in "\n".join(class_tables(summary, "2km"))


def test_train_command_on_events_writes_checkpoint_and_card(event_stores: Path, tmp_path: Path) -> None:
    from cli import main

    cfg = tmp_path / "train-events.toml"
    text = (event_stores / "train.toml").read_text()
    cfg.write_text(f'seed = 1\nout_dir = "{tmp_path / "out"}"\n[events]\ncatalogue = "{event_stores / "catalogue.toml"}"\nvalidation = ["a2", "b2"]\n' + text)
    assert main(["train", "--config", str(cfg), "--device", "cpu"]) == 0
    card = json.loads((tmp_path / "out" / "best.card.json").read_text())
    assert {k for k, v in card["data"].items() if v["role"] == "validation"} == {"a2", "b2"}
    assert card["calibration"]["thresholds"] == [0.5, 1.0, 5.0] and len(card["calibration"]["cuts"]) == 4
    assert card["train_seconds"] > 0 and card["hardware"]["device"] == "cpu" and len(card["data"]["a0"]["fingerprint"]) == 16
    assert card["data"]["a0"]["source_fingerprint"] is None  # written by a test, not imported from files
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[events]\ncatalogue = "{event_stores / "catalogue.toml"}"\nvalidation = ["zz"]\n' + text)
    assert main(["train", "--config", str(bad), "--device", "cpu"]) == 2


def test_training_fits_cuts_conditioned_on_the_residual_guide(event_stores: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``train.cut_condition = "residual_guide"``: the validation fits two cuts per lead and
    threshold (guide below / at or above it), the checkpoint carries them and the adapter uses them."""
    from cli import main
    from nowcast.models import create_nowcaster

    cfg = tmp_path / "train-events.toml"
    text = (event_stores / "train.toml").read_text().replace("[train]\n", '[train]\ncut_condition = "residual_guide"\n')
    cfg.write_text(f'seed = 1\nout_dir = "{tmp_path / "out"}"\n[events]\ncatalogue = "{event_stores / "catalogue.toml"}"\nvalidation = ["a2", "b2"]\n' + text)
    assert main(["train", "--config", str(cfg), "--device", "cpu"]) == 0
    card = json.loads((tmp_path / "out" / "best.card.json").read_text())
    assert card["calibration"]["condition"] == "residual_guide"
    assert np.asarray(card["calibration"]["cuts"]).shape == (4, 3, 2)
    model = create_nowcaster("convlstm", checkpoint=tmp_path / "out" / "best.pt")
    assert model.calibration.conditioned
    capsys.readouterr()
    not_residual = text.replace('advection = "residual"', 'advection = "input"')
    cfg.write_text(f'out_dir = "{tmp_path / "out2"}"\n[events]\ncatalogue = "{event_stores / "catalogue.toml"}"\nvalidation = ["a2", "b2"]\n' + not_residual)
    assert main(["train", "--config", str(cfg), "--device", "cpu"]) == 2  # no residual guide to condition on
    assert "cut_condition = 'residual_guide' needs" in capsys.readouterr().err


def test_training_fits_a_resolution_class_its_own_cuts(event_stores: Path, tmp_path: Path) -> None:
    """``train.class_cuts_m``: the validation windows on grids of that cell size get their own
    cuts (in the checkpoint's calibration), and the adapter picks them by the history's grid."""
    from cli import main
    from nowcast.models import create_nowcaster
    from nowcast.store import ObservationStore

    store = ObservationStore.open(str(event_stores / "stores" / "2km" / "a2.zarr"))
    cell = store.grid.cell_size_m
    cfg = tmp_path / "train-events.toml"
    text = (event_stores / "train.toml").read_text().replace("[train]\n", f"[train]\nclass_cuts_m = [{cell}, 100000.0]\n")
    cfg.write_text(f'seed = 1\nout_dir = "{tmp_path / "out"}"\n[events]\ncatalogue = "{event_stores / "catalogue.toml"}"\nvalidation = ["a2", "b2"]\n' + text)
    assert main(["train", "--config", str(cfg), "--device", "cpu"]) == 0
    model = create_nowcaster("convlstm", checkpoint=tmp_path / "out" / "best.pt")
    classes = model.calibration.classes
    assert [c for c, _ in classes] == [cell]  # the 100-km class had no validation window: pooled cuts
    assert np.asarray(classes[0][1]).shape == (4, 3)
    hist = store.window(store.times()[5], model.n_inputs)
    from nowcast.models.convlstm import cell_size_of

    assert cell_size_of(hist) == pytest.approx(cell)
    np.testing.assert_array_equal(model.calibration.cuts_for(cell_size_of(hist)), classes[0][1])


def test_training_refits_a_class_cuts_on_full_validation_frames(event_stores: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``train.full_frame_cuts_m``: once training ends, best.pt's cuts for grids of that class are
    those a refit of the trained weights on the full frames of the class's validation events gives;
    the crop-fitted pooled cuts stay; the card records the refit; a class without validation
    stores keeps the pooled cuts; a recipe that cannot honour it fails before any work."""
    from cli import main
    from nowcast.models.calibration import ThresholdCalibration
    from nowcast.models.convlstm import read_checkpoint
    from nowcast.store import ObservationStore
    from training.recalibrate import exceedance_histogram

    stores = {n: ObservationStore.open(str(event_stores / "stores" / c / f"{n}.zarr")) for n, c in (("a2", "2km"), ("b2", "240m"))}
    cell = stores["a2"].grid.cell_size_m
    assert stores["b2"].grid.cell_size_m == pytest.approx(cell)  # the synthetic 'classes' share one grid
    cfg = tmp_path / "train-events.toml"
    text = (event_stores / "train.toml").read_text().replace("[train]\n", f"[train]\nfull_frame_cuts_m = [{cell}, 100000.0]\n")
    cfg.write_text(f'seed = 1\nout_dir = "{tmp_path / "out"}"\n[events]\ncatalogue = "{event_stores / "catalogue.toml"}"\nvalidation = ["a2", "b2"]\n' + text)
    assert main(["train", "--config", str(cfg), "--device", "cpu"]) == 0
    best = tmp_path / "out" / "best.pt"
    ckpt, crops = read_checkpoint(best), read_checkpoint(tmp_path / "out" / "last.pt")  # one epoch: last = best before the refit
    cal, before = ThresholdCalibration.from_dict(ckpt["calibration"]), ThresholdCalibration.from_dict(crops["calibration"])
    assert before.classes == () and [c for c, _ in cal.classes] == [cell]  # the 100-km class had no validation store
    np.testing.assert_array_equal(cal.cuts, before.cuts)
    hist, n = exceedance_histogram(ckpt, best, [(s.url, s.times()) for s in stores.values()], event_stores / "cache")
    np.testing.assert_array_equal(cal.classes[0][1], hist.optimal_cuts())
    assert not np.array_equal(cal.classes[0][1], before.cuts)  # full frames, not the 32-cell crops
    data = ckpt["calibration_data"]
    assert data["frames"] == "full" and data["n_windows"] == n and {p["store"] for p in data["parts"]} == {s.url for s in stores.values()}
    card = json.loads((tmp_path / "out" / "best.card.json").read_text())
    assert card["calibration"] == ckpt["calibration"] and card["calibration_data"] == data
    capsys.readouterr()
    conditioned = text.replace("[train]\n", '[train]\ncut_condition = "residual_guide"\n')
    cfg.write_text(f'out_dir = "{tmp_path / "out2"}"\n[events]\ncatalogue = "{event_stores / "catalogue.toml"}"\nvalidation = ["a2", "b2"]\n' + conditioned)
    assert main(["train", "--config", str(cfg), "--device", "cpu"]) == 2
    assert "full_frame_cuts_m needs" in capsys.readouterr().err
    assert not (tmp_path / "out2" / "best.pt").exists()


def test_guides_warm_up_fills_the_cache_training_reads(event_stores: Path, tmp_path: Path) -> None:
    """`python -m training.events guides` computes (in worker processes, one window per task)
    the guides training selects and those of every start time the event DAP scores at the same
    stride, so neither computes any later; S-PROG guide recipes included."""
    from nowcast.config import read_mapping
    from nowcast.store import ObservationStore
    from training.config import parse_options
    from training.dataset import select_windows
    from training.events import load_catalogue, main, warm_guides

    cache = tmp_path / "guides"
    recipe = tmp_path / "sprog.toml"
    text = (event_stores / "train.toml").read_text().replace(f'cache_dir = "{event_stores / "cache"}"', f'cache_dir = "{cache}"')
    recipe.write_text(text.replace('advection = "residual"', 'advection = "residual"\nguide_sources = ["sprog", "extrapolation"]'))
    cat = load_catalogue(event_stores / "catalogue.toml")
    done = warm_guides(cat, recipe, workers=2, only=["a0", "b1"], progress=False)
    assert set(done) == {"a0", "b1"} and all(n > 0 for n, _ in done.values())
    files = sorted(cache.glob("guide-*.npy"))
    assert 0 < len(files) <= sum(n for n, _ in done.values())  # identical (dry) windows share a file
    assert np.load(files[0]).shape[1] == 2  # S-PROG and LK rain channels
    cfg, opts = parse_options({k: v for k, v in read_mapping(recipe).items() if k in ("model", "train")})
    store = ObservationStore.open(cat.store_url(cat.get("a0")))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    windows = select_windows(store, store.times(), cfg, opts, cache)
    assert {Path(w.guide_file) for w in windows} <= set(files)  # every window's guide was there already
    assert {f: f.stat().st_mtime_ns for f in files} == stamps
    from nowcast import dims
    from nowcast.evaluation import start_times
    from nowcast.models.convlstm import guide_key

    for t in start_times(store, cfg.n_inputs, opts.window_stride):  # the DAP's scoring finds every guide cached
        history = store.window(t, cfg.n_inputs)
        rain, light = (history[v].values.astype(dims.FLOAT) for v in (dims.RAIN_RATE, dims.LIGHTNING))
        assert (cache / f"guide-{guide_key(rain[-cfg.oflow_inputs:], light, cfg)}.npy") in stamps
    assert main(["guides", "--catalogue", str(event_stores / "catalogue.toml"), "--config", str(event_stores / "train.toml"),
                 "--only", "zz", "--no-progress"]) == 0  # no such event: nothing to do
    with pytest.raises(FileNotFoundError, match="build them"):
        warm_guides(cat.model_copy(update={"store_root": str(tmp_path / "nowhere")}), recipe, only=["a0"], progress=False)


def test_cut_ceiling_scores_every_cut_scheme_on_the_runs_held_out_events(event_stores: Path, tmp_path: Path) -> None:
    from training.dap.cuts import SCHEMES, CeilingError, run_ceiling

    plan = _tiny_plan(event_stores, "tiny-cuts", ["sprog"], repetitions=1)
    run = tmp_path / "run"
    with pytest.raises(CeilingError, match="not a finished fold"):
        run_ceiling(plan, run, tmp_path / "early", progress=False)
    EventRunner(plan, run, progress=False).run()
    with pytest.raises(CeilingError, match="not in the plan"):
        run_ceiling(plan, run, tmp_path / "bad", repetitions=[1], progress=False)
    out = run / "cut-ceiling"
    summary = run_ceiling(plan, run, out, progress=False)
    ceiling = xr.load_dataset(out / "results.nc")
    dap = xr.load_dataset(run / "results.nc")
    assert set(ceiling["method"].values) == {"sprog", "convlstm", *SCHEMES}
    for m in ("sprog", "convlstm"):  # the run's own tables, unchanged
        for c in evaluation.COUNTS:
            np.testing.assert_array_equal(ceiling[c].sel({"method": m}).values, dap[c].sel({"method": m}).values)

    def total(ds: xr.Dataset, m: str) -> np.ndarray:
        return sum(ds[c].sel({"method": m}).values for c in evaluation.COUNTS)

    def observed(ds: xr.Dataset, m: str) -> np.ndarray:
        return ds["hits"].sel({"method": m}).values + ds["misses"].sel({"method": m}).values

    for m in SCHEMES:  # the histograms count exactly the cells and exceedances the DAP scored
        np.testing.assert_array_equal(total(ceiling, m), total(dap, "convlstm"))
        np.testing.assert_array_equal(observed(ceiling, m), observed(dap, "convlstm"))

    classes = {"2km": ["a0", "a1", "a2"], "240m": ["b0", "b1", "b2"]}
    for events in classes.values():  # the ceiling's pooled CSI is at least every other scheme's, at every lead
        pooled = evaluation.scores(evaluation.pool_by_minutes(ceiling, [5, 10, 15, 20], events))["csi"]
        for m in SCHEMES[:-1]:
            assert (pooled.sel({"method": "cuts-hindsight-event"}).values >= pooled.sel({"method": m}).values - 1e-12).all(), m
    entry = summary["classes"]["2km"]
    assert set(entry["vs_sprog"]) == {"convlstm", *SCHEMES}
    assert "with hindsight (not a forecast)" in (out / "report.md").read_text()
    assert (out / "ceiling.png").stat().st_size > 0
    ledger = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert [r["event"] for r in ledger] == ["cut-ceiling"] and len(ledger[0]["splits"]) == 3
    stamps = {p: p.stat().st_mtime_ns for p in (out / "hist").rglob("*.npz")}
    splits = [r for r in (json.loads(line) for line in (run / "ledger.jsonl").read_text().splitlines()) if r["event"] == "split"]
    assert len(stamps) == sum(len(r["test"]) + len(r["validation"]) for r in splits)  # one per split and event it used
    run_ceiling(plan, run, out, progress=False)  # a rerun reuses every histogram
    assert {p: p.stat().st_mtime_ns for p in (out / "hist").rglob("*.npz")} == stamps

    # --conditioned: guide-conditioned histograms give the same plain schemes, plus the conditioned one
    from nowcast.models.calibration import NEVER
    from training.dap.cuts import CONDITIONED, SWITCH

    def splits_of(path: Path) -> list[dict]:
        return [{"split": f"r{r['repetition']}-f{r['fold']}", **r} for r in (json.loads(line) for line in (path / "ledger.jsonl").read_text().splitlines()) if r["event"] == "split"]

    cond_out = run / "cut-ceiling-conditioned"
    cond = run_ceiling(plan, run, cond_out, progress=False, conditioned=True)
    both = xr.load_dataset(cond_out / "results.nc")
    assert set(both["method"].values) == {"sprog", "convlstm", *SCHEMES, CONDITIONED, SWITCH}
    for m in ("sprog", "convlstm", *SCHEMES):  # both sides summed: the unconditioned histograms exactly
        for c in evaluation.COUNTS:
            np.testing.assert_array_equal(both[c].sel({"method": m}).values, ceiling[c].sel({"method": m}).values)
    np.testing.assert_array_equal(total(both, CONDITIONED), total(dap, "convlstm"))
    np.testing.assert_array_equal(observed(both, CONDITIONED), observed(dap, "convlstm"))
    assert set(cond["classes"]["2km"]["vs_sprog"]) == {"convlstm", *SCHEMES, CONDITIONED, SWITCH}
    np.testing.assert_array_equal(total(both, SWITCH), total(dap, "convlstm"))
    records = [json.loads(line) for line in (cond_out / "ledger.jsonl").read_text().splitlines()][0]["splits"]
    split_tests = {r["split"]: r["test"] for r in splits_of(run)}
    chosen = []
    for rec in records:  # per lead and threshold: the residual guide's own area (never, 0) or the network's cut on both sides
        for cls in ("2km", "240m"):
            switch, single = np.asarray(rec["cuts"][f"class-validation-switch {cls}"]), np.asarray(rec["cuts"]["validation"])
            guide_own = (switch[..., 0] == NEVER) & (switch[..., 1] == 0.0)
            assert (guide_own | ((switch[..., 0] == single) & (switch[..., 1] == single))).all()
            network_leads = ~guide_own[:, 0]
            chosen += guide_own[:, 0].tolist()
            for event in split_tests[rec["split"]]:  # where the network's area was chosen: the network's counts
                if event.startswith("a" if cls == "2km" else "b"):
                    for c in evaluation.COUNTS:
                        np.testing.assert_array_equal(both[c].sel({"method": SWITCH, "event": event}).values[network_leads, 0],
                                                      both[c].sel({"method": "cuts-validation", "event": event}).values[network_leads, 0])
    assert any(chosen) and not all(chosen)  # both answers occur in this run, so both are checked
    assert "conditioned on S-PROG's area" in (cond_out / "report.md").read_text()
    cut_records = [json.loads(line) for line in (cond_out / "ledger.jsonl").read_text().splitlines()][0]["splits"][0]["cuts"]
    assert any(k.startswith("class-validation-conditioned") for k in cut_records)
    assert any(k.startswith("class-validation-switch") for k in cut_records)
    cond_stamps = {p: p.stat().st_mtime_ns for p in (cond_out / "hist").rglob("*-conditioned.npz")}
    assert len(cond_stamps) == len(stamps)
    run_ceiling(plan, run, cond_out, progress=False, conditioned=True)
    assert {p: p.stat().st_mtime_ns for p in (cond_out / "hist").rglob("*-conditioned.npz")} == cond_stamps


def test_plan_baseline_variants_are_checked() -> None:
    base = {"name": "v", "baselines": ["sprog", "sprog-c4"]}
    plan = EventPlan(**base, baseline_options={"sprog-c4": {"method": "sprog", "n_cascade_levels": 4}})
    assert plan.baseline("sprog-c4") == ("sprog", {"n_cascade_levels": 4})
    assert plan.baseline("sprog") == ("sprog", {})
    with pytest.raises(ValueError, match="neither registered nowcasters nor labels"):
        EventPlan(**base)
    with pytest.raises(ValueError, match="method must be one of"):
        EventPlan(**base, baseline_options={"sprog-c4": {"method": "nope"}})
    with pytest.raises(ValueError, match="shadows the registered nowcaster"):
        EventPlan(name="v", baselines=["sprog"], baseline_options={"sprog": {"method": "sprog", "n_cascade_levels": 4}})


def test_earlier_plans_keep_their_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fields added to plans later drop out of the hash at their defaults: a committed run's plan
    hashes as it did when it ran (its folds and tables stay reusable)."""
    import tomllib

    from training.dap.events import plan_hash, train_options

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # the plan names its training config relative to the repository
    plan = EventPlan(**tomllib.loads(Path("plans/real-events-kfold-sprog-2kmcuts.toml").read_text()))
    recorded = json.loads(Path("results/real-events-kfold-sprog-2kmcuts/results.json").read_text())["plan_hash"]
    assert plan_hash(plan, train_options(plan)) == recorded
    assert plan_hash(plan.model_copy(update={"learned": False}), train_options(plan)) != recorded
    explicit = plan.model_copy(update={"splits": plan.splits.model_copy(update={"train_fraction": 1.0})})
    assert plan_hash(explicit, train_options(plan)) == recorded
    half = plan.model_copy(update={"splits": plan.splits.model_copy(update={"train_fraction": 0.5})})
    assert plan_hash(half, train_options(plan)) != recorded


def test_baselines_only_plan_pairs_each_variant_with_sprog(event_stores: Path, tmp_path: Path) -> None:
    plan = _tiny_plan(event_stores, "variants", ["sprog", "sprog-c4"], repetitions=1, learned=False,
                      baseline_options={"sprog-c4": {"method": "sprog", "n_cascade_levels": 4}})
    out = tmp_path / "run"
    summary = EventRunner(plan, out, progress=False).run()
    records = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["plan", "summary"]  # nothing trained
    assert not (out / "folds").exists()
    counts = xr.load_dataset(out / "results.nc")
    assert set(counts["method"].values) == {"sprog", "sprog-c4"}
    key = json.loads((out / "tables" / "sprog-c4" / "a0.json").read_text())["key"]
    assert key["method"] == "sprog-c4" and key["nowcaster"] == "sprog" and key["options"] == {"n_cascade_levels": 4}
    assert "options" not in json.loads((out / "tables" / "sprog" / "a0.json").read_text())["key"]
    # the variant is another forecast: its counts differ from S-PROG's somewhere
    assert not np.array_equal(counts["hits"].sel({"method": "sprog"}).values, counts["hits"].sel({"method": "sprog-c4"}).values)
    entry = summary["classes"]["2km"]
    assert "csi:sprog-c4-sprog" in entry["intervals"] and "csi:convlstm-sprog" not in entry["intervals"]
    report = (out / "report.md").read_text()
    assert "baselines only" in report and "| sprog-c4 - S-PROG |" in report and "held-out" not in report


def test_event_table_shows_each_events_own_difference() -> None:
    from training.dap.events import event_table

    def table(hits: int, misses: int, false: int) -> ContingencyTable:
        t = ContingencyTable.init([1.0], 2)
        t.hits[:], t.misses[:], t.false_alarms[:], t.correct_negatives[:] = hits, misses, false, 100
        return t

    tables = {("sprog", "big"): table(50, 25, 25), ("convlstm", "big"): table(60, 15, 20),
              ("sprog", "small"): table(5, 10, 5), ("convlstm", "small"): table(4, 11, 5)}
    counts = evaluation.tables_dataset(tables, {"big": 5.0, "small": 10.0})
    lines = event_table(counts, ["big", "small"], minutes=(5, 10))
    assert lines[0] == "| event | S-PROG, 1 mm/h, 5 / 10 min | ConvLSTM - S-PROG, 1 mm/h, 5 / 10 min | ConvLSTM area / S-PROG's, 1 mm/h, 5 / 10 min |"
    assert lines[2] == "| big | 0.500 / 0.500 | +0.132 / +0.132 | 1.067 / 1.067 |"  # 60 / 95 - 0.5; (60 + 20) / (50 + 25)
    assert lines[3] == "| small | - / 0.250 | - / -0.050 | - / 0.900 |"  # a 10-minute event has no 5-minute lead
    # pooled: 10 min sums both events: CSI 64 / 115 against 55 / 120, areas 89 / 85
    assert lines[4] == "| all 2 pooled | 0.500 / 0.458 | +0.132 / +0.098 | 1.067 / 1.047 |"
