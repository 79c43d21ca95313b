"""The convlstm adapter: checkpoint checks, odd grid sizes, lead validation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from model_data import blob_frames, make_history

from nowcast import dims
from nowcast.models import create_nowcaster
from nowcast.models.convlstm import CheckpointError, read_checkpoint
from nowcast.models.motion import ForecastInputError


def test_no_checkpoint_means_the_shipped_weights(tmp_path: Path) -> None:
    from nowcast.models.convlstm import file_hash
    from nowcast.models.weights import default_checkpoint

    shipped = default_checkpoint("real")
    m = create_nowcaster("convlstm")
    assert m.checkpoint == shipped and m.version == file_hash(shipped)
    assert m.calibration is not None  # the shipped model cuts its probabilities as fitted on validation


def test_missing_weights_name_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nowcast.models import weights

    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(weights.MissingWeightsError, match="nowcast train --config"):
        create_nowcaster("convlstm")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope.pt: checkpoint file not found"):
        create_nowcaster("convlstm", checkpoint=tmp_path / "nope.pt")


def test_truncated_checkpoint_is_refused(convlstm_checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.pt"
    data = convlstm_checkpoint.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt: not a readable checkpoint"):
        create_nowcaster("convlstm", checkpoint=bad)


def test_garbage_checkpoint_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="garbage.pt"):
        read_checkpoint(bad)


def test_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a nowcast ConvLSTM checkpoint"):
        read_checkpoint(other)


def test_weights_not_matching_config_are_refused(convlstm_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = torch.load(convlstm_checkpoint, weights_only=True)
    ckpt["model_config"]["channels"] = [4, 16]  # architecture in the config differs from the weights
    bad = tmp_path / "mismatch.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=r"mismatch\.pt: weights do not match"):
        create_nowcaster("convlstm", checkpoint=bad)


def test_version_is_the_file_hash(convlstm_checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.pt"
    shutil.copyfile(convlstm_checkpoint, copy)
    a = create_nowcaster("convlstm", checkpoint=convlstm_checkpoint)
    b = create_nowcaster("convlstm", checkpoint=copy)
    assert a.version == b.version and len(a.version) == 12


def test_grid_not_a_multiple_of_the_strides(convlstm_checkpoint: Path) -> None:
    h = make_history(blob_frames(3, ny=50, nx=37))
    fc = create_nowcaster("convlstm", checkpoint=convlstm_checkpoint).forecast(h)
    assert fc[dims.RAIN_RATE].shape == (15, 50, 37)
    assert np.isfinite(fc[dims.RAIN_RATE].values).all()


def test_leads_beyond_the_network_are_refused(convlstm_checkpoint: Path) -> None:
    m = create_nowcaster("convlstm", checkpoint=convlstm_checkpoint)
    h = make_history(blob_frames(3))
    with pytest.raises(ForecastInputError, match="unsupported lead times"):
        m.forecast(h, [pd.Timedelta(minutes=80)])
    with pytest.raises(ForecastInputError, match="unsupported lead times"):
        m.forecast(h, [pd.Timedelta(minutes=7)])
    with pytest.raises(ForecastInputError, match="multiples of the history cadence"):
        m.forecast(make_history(blob_frames(3), cadence="10min"))


def test_any_cadence_forecasts_in_its_own_steps(convlstm_checkpoint: Path) -> None:
    """A 6-minute store works (it failed with 'cadence differs' before): leads 6..90 min."""
    m = create_nowcaster("convlstm", checkpoint=convlstm_checkpoint)
    h = make_history(blob_frames(3), cadence="6min")
    leads = [pd.Timedelta(minutes=6 * k) for k in range(1, 16)]
    fc = m.forecast(h, leads)
    assert fc[dims.RAIN_RATE].shape[0] == 15
    same = m.forecast(make_history(blob_frames(3)), [pd.Timedelta(minutes=5 * k) for k in range(1, 16)])
    np.testing.assert_allclose(fc[dims.RAIN_RATE].values, same[dims.RAIN_RATE].values)  # steps, not minutes


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_without_cuda_is_refused(convlstm_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        create_nowcaster("convlstm", checkpoint=convlstm_checkpoint, device="cuda")
    with pytest.raises(ValueError, match="device must be"):
        create_nowcaster("convlstm", checkpoint=convlstm_checkpoint, device="tpu")
