"""``nowcast train`` end to end on a store filled from the synthetic source."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import main

CONFIG = """
seed = 0
[data]
store = "{store}"
synthetic_seed = 2
synthetic_size = 32
train = [["2024-06-01T12:00", "2024-06-01T12:40"]]
val = [["2024-06-01T13:30", "2024-06-01T13:45"]]
[model]
n_inputs = 3
n_leads = 3
channels = [4, 4]
kernels = [3, 3]
strides = [2, 2]
stem_channels = 4
[train]
epochs = 1
batch_size = 2
samples_per_epoch = 4
crop_size = 32
min_wet_fraction = 0.0
progress = false
"""


def test_train_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "train.toml"
    cfg.write_text(CONFIG.format(store=tmp_path / "store.zarr"))
    out = tmp_path / "run"
    rc = main(["train", "--config", str(cfg), "--device", "cpu", "--out-dir", str(out), "--set", "train.lr=0.002"])
    assert rc == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert Path(printed) == out / "best.pt" and Path(printed).is_file()
    assert (out / "metrics.csv").read_text().count("\n") == 2
    # --resume of a finished run is accepted and trains no further epoch
    rc = main(["train", "--config", str(cfg), "--device", "cpu", "--out-dir", str(out), "--set", "train.lr=0.002", "--resume", str(out / "last.pt")])
    assert rc == 0
    assert (out / "metrics.csv").read_text().count("\n") == 2


def test_invalid_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "train.toml"
    cfg.write_text(CONFIG.format(store=tmp_path / "store.zarr"))
    rc = main(["train", "--config", str(cfg), "--set", "model.advection=sideways"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "model.advection" in err and "train.toml" in err
    rc = main(["train", "--config", str(tmp_path / "missing.toml")])
    assert rc == 2 and "missing.toml" in capsys.readouterr().err
