"""Training end to end on a tiny synthetic store: loss, checkpoints, resume, determinism."""

from __future__ import annotations

import copy
import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from train_helpers import TINY_OPTIONS, run_fit

from nowcast import dims
from nowcast.models import create_nowcaster
from nowcast.models.convlstm import CheckpointError, read_checkpoint
from training.checkpoint import build_network


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_lowers_the_loss(run3: Path) -> None:
    rows = _rows(run3)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    train = [float(r["train_loss"]) for r in rows]
    val = [float(r["val_loss"]) for r in rows]
    assert train[-1] < train[0]
    assert val[-1] < val[0]
    assert all(0.0 <= float(r["val_csi_1"]) <= 1.0 for r in rows)
    assert (run3 / "best.pt").is_file() and (run3 / "last.pt").is_file()


def test_checkpoint_contents_and_round_trip(run3: Path, tiny_store) -> None:  # noqa: ANN001
    ckpt = read_checkpoint(run3 / "best.pt")
    for key in ("model_config", "train_config", "state_dict", "data_fingerprint", "code_version", "metrics", "history", "store_version"):
        assert key in ckpt, key
    assert ckpt["model_config"]["channels"] == TINY_OPTIONS["model"]["channels"]
    assert ckpt["train_config"]["lr"] == TINY_OPTIONS["train"]["lr"]
    assert ckpt["code_version"] and ckpt["code_version"] != "unknown"
    from nowcast.provenance import data_fingerprint

    assert ckpt["data_fingerprint"] == data_fingerprint(tiny_store), "the content fingerprint, as ledgers and cards"
    assert "source_fingerprint" in ckpt and ckpt["source_fingerprint"] is None  # synthetic frames: no source files
    best_epoch = ckpt["trainer"]["best_epoch"]
    assert ckpt["metrics"]["epoch"] == best_epoch
    # the adapter reproduces the network's own forward pass
    model = create_nowcaster("convlstm", checkpoint=run3 / "best.pt")
    t = tiny_store.times()[36]
    history = tiny_store.window(t, model.n_inputs)
    leads = [pd.Timedelta(minutes=5 * k) for k in range(1, 5)]
    fc = model.forecast(history, leads)
    net = build_network(ckpt, run3 / "best.pt").eval()
    rain, light = model.predict_arrays(history[dims.RAIN_RATE].values, history[dims.LIGHTNING].values)
    covered = np.isfinite(history[dims.RAIN_RATE].values[-1])
    np.testing.assert_allclose(fc[dims.RAIN_RATE].values[:, covered], rain[:, covered], rtol=1e-6)
    assert _same(net.state_dict(), model.net.state_dict())


def test_lightning_probability_is_calibrated_on_validation(run3: Path, tiny_store) -> None:  # noqa: ANN001
    """The checkpoint carries an isotonic calibration per lead (fitted in validation) that the adapter applies."""
    ckpt = read_checkpoint(run3 / "best.pt")
    cal = ckpt["lightning_calibration"]
    assert cal["method"] == "isotonic" and len(cal["x"]) == len(cal["y"]) == ckpt["model_config"]["n_leads"]
    assert all(np.all(np.diff(y) >= 0) for y in cal["y"])
    assert len(cal["validation_csi_cuts"]["cut"]) == ckpt["model_config"]["n_leads"]
    assert "val_lightning_brier" in ckpt["metrics"]
    model = create_nowcaster("convlstm", checkpoint=run3 / "best.pt")
    assert model.lightning_calibration is not None
    hist = tiny_store.window(tiny_store.times()[36], model.n_inputs)
    rain, light = hist[dims.RAIN_RATE].values, hist[dims.LIGHTNING].values
    _, calibrated = model.predict_arrays(rain, light)
    model.lightning_calibration, calibration = None, model.lightning_calibration
    _, raw = model.predict_arrays(rain, light)
    np.testing.assert_allclose(calibrated, calibration.apply(raw), atol=1e-6)
    assert not np.allclose(calibrated, raw)


def test_same_seed_same_weights(run2: Path, tiny_store, splits, options, tmp_path: Path) -> None:  # noqa: ANN001
    run_fit(tiny_store, splits, options, tmp_path)
    assert _same(_weights(run2 / "last.pt"), _weights(tmp_path / "last.pt"))


def test_other_seed_other_weights(run2: Path, tiny_store, splits, options, tmp_path: Path) -> None:  # noqa: ANN001
    options["train"]["epochs"] = 1
    run_fit(tiny_store, splits, options, tmp_path, seed=1)
    assert not _same(_weights(run2 / "last.pt"), _weights(tmp_path / "last.pt"))


def test_resume_continues_exactly(run2: Path, run3: Path, tiny_store, splits, options, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "resumed"
    shutil.copytree(run2, out)
    options["train"]["epochs"] = 3
    run_fit(tiny_store, splits, options, out, resume=out / "last.pt")
    assert [int(r["epoch"]) for r in _rows(out)] == [1, 2, 3]
    assert _same(_weights(run3 / "last.pt"), _weights(out / "last.pt"))


def test_resume_with_other_architecture_is_refused(run2: Path, tiny_store, splits, options, tmp_path: Path) -> None:  # noqa: ANN001
    options["model"]["channels"] = [6, 12]
    options["train"]["epochs"] = 3
    with pytest.raises(CheckpointError, match=r"last\.pt: model configuration does not match \(channels"):
        run_fit(tiny_store, splits, options, tmp_path, resume=run2 / "last.pt")


def test_resume_on_other_windows_is_refused(run2: Path, tiny_store, splits, options, tmp_path: Path) -> None:  # noqa: ANN001
    options["train"]["epochs"] = 3
    other = (splits[0][:-3], splits[1])
    with pytest.raises(CheckpointError, match="different windows"):
        run_fit(tiny_store, other, options, tmp_path, resume=run2 / "last.pt")


def test_resume_from_a_corrupted_checkpoint_is_refused(run2: Path, tiny_store, splits, options, tmp_path: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "last.pt"
    data = (run2 / "last.pt").read_bytes()
    bad.write_bytes(data[:1000])
    with pytest.raises(CheckpointError, match=rf"{bad}: not a readable checkpoint"):
        run_fit(tiny_store, splits, options, tmp_path / "out", resume=bad)


def test_too_dry_windows_are_skipped(tiny_store, splits, options, tmp_path: Path) -> None:  # noqa: ANN001
    options["train"]["min_wet_fraction"] = 1.0
    with pytest.raises(ValueError, match="no training windows"):
        run_fit(tiny_store, splits, options, tmp_path)


def test_overlapping_splits_are_refused(tiny_store, splits, options, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="overlap"):
        run_fit(tiny_store, (splits[0], splits[0][-2:]), options, tmp_path)


def test_fine_tuning_starts_from_given_weights(run2: Path, tiny_store, splits, options, tmp_path: Path) -> None:  # noqa: ANN001
    options["train"].update(init_checkpoint=str(run2 / "best.pt"), epochs=1, lr=1e-12)
    run_fit(tiny_store, splits, options, tmp_path)
    a, b = _weights(run2 / "best.pt"), _weights(tmp_path / "last.pt")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_unguided_model_trains(tiny_store, splits, options, tmp_path: Path) -> None:  # noqa: ANN001
    opts = copy.deepcopy(options)
    opts["model"]["advection"] = "none"
    opts["train"]["epochs"] = 1
    path = run_fit(tiny_store, splits, opts, tmp_path)
    assert read_checkpoint(path)["model_config"]["advection"] == "none"


@pytest.mark.slow
def test_spawn_workers_give_the_same_weights(run2: Path, tiny_store, splits, options, tmp_path: Path) -> None:  # noqa: ANN001
    options["train"]["num_workers"] = 2
    run_fit(tiny_store, splits, options, tmp_path)
    assert _same(_weights(run2 / "last.pt"), _weights(tmp_path / "last.pt"))
