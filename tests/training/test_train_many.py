"""Training on several stores on different grids (``training.api.fit_many``, ``MultiStoreDataset``)."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pandas as pd
import pytest
import torch
from train_helpers import START, TINY_OPTIONS

from nowcast.models import create_nowcaster
from nowcast.models.convlstm import read_checkpoint
from nowcast.models.network import ModelConfig
from training.api import fit_many
from training.dataset import MultiStoreDataset, WindowDataset, select_windows


@pytest.fixture(scope="module")
def other_store(tmp_path_factory: pytest.TempPathFactory):  # -> ObservationStore
    """A second, smaller and non-square grid (40 x 56 cells), another seed and day."""
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore

    src = SyntheticRadar(SyntheticRadar.default_grid(nx=56, ny=40), seed=11)
    url = str(tmp_path_factory.mktemp("other") / "obs.zarr")
    store = ObservationStore.create(url, src.grid, cadence=pd.Timedelta("5min"))
    for t in pd.date_range(START + pd.Timedelta("1D"), periods=30, freq="5min"):
        f = src.frame(t)
        store.append(f["rain_rate"], lightning=f["lightning"])
    return ObservationStore.open(url)


def _options(cache: Path) -> dict:
    o = copy.deepcopy(TINY_OPTIONS)
    o["train"].update(cache_dir=str(cache), crop_size=48, val_crop_size=48)
    return o


def test_multi_store_items_share_one_shape_and_padding_is_masked(tiny_store, other_store, guide_cache: Path) -> None:  # noqa: ANN001
    o = _options(guide_cache)
    cfg = ModelConfig.model_validate(o["model"])
    from training.config import TrainOptions

    opts = TrainOptions.model_validate(o["train"])
    parts = []
    for i, store in enumerate((tiny_store, other_store)):
        w = select_windows(store, store.times()[3:12], cfg, opts, guide_cache)
        assert w, store.url
        parts.append(WindowDataset(store.url, w, cfg, 48, train=True, augment=True, seed=i, grid_shape=store.grid.shape))
    ds = MultiStoreDataset(parts)
    assert len(ds) == len(parts[0]) + len(parts[1])
    assert ds.shape == (48, 48)  # 64x64 cropped to 48; 40x56 -> 40x48 padded to 48x48
    first, last = ds[0], ds[len(ds) - 1]
    for k in first:
        assert first[k].shape == last[k].shape, k
    # the 40-row grid contributes 8 rows of padding: masked out, zero rain (rows or columns after a rotation)
    n_masked_rows = int((~last["mask"].any(dim=(0, 2))).sum()) + int((~last["mask"].any(dim=(0, 1))).sum())
    assert n_masked_rows >= 8
    assert float(last["target_rate"][~last["mask"]].abs().sum()) == 0.0
    batch = torch.utils.data.default_collate([first, last])
    assert batch["inputs"].shape[0] == 2
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_fit_many_trains_on_two_grids_and_checks_inputs(tiny_store, other_store, splits, guide_cache: Path, tmp_path: Path) -> None:  # noqa: ANN001
    o = _options(guide_cache)
    other = other_store.times()
    parts = [(tiny_store, splits[0], pd.DatetimeIndex([])), (other_store, other[3:14], other[22:28])]
    ckpt = fit_many(o, parts, seed=0, device="cpu", out_dir=tmp_path / "run")
    assert ckpt == tmp_path / "run" / "best.pt"
    meta = read_checkpoint(ckpt)
    assert meta["store"] == f"{tiny_store.url};{other_store.url}"
    assert meta["n_val_windows"] >= 1 and meta["n_train_windows"] > len(splits[0]) // 2
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == o["train"]["epochs"] and all(0.0 <= float(r["val_csi_1"]) <= 1.0 for r in rows)
    # the checkpoint forecasts on either grid
    model = create_nowcaster("convlstm", checkpoint=ckpt)
    t = other[25]
    fc = model.forecast(other_store.window(t, model.n_inputs), [pd.Timedelta("5min")])
    assert fc["rain_rate"].shape[-2:] == other_store.grid.shape
    # bad inputs are refused with the reason
    with pytest.raises(ValueError, match="overlap"):
        fit_many(o, [(other_store, other[3:14], other[10:20])], seed=0, device="cpu", out_dir=tmp_path / "bad")
    with pytest.raises(ValueError, match="no validation windows"):
        fit_many(o, [(other_store, other[3:14], pd.DatetimeIndex([]))], seed=0, device="cpu", out_dir=tmp_path / "bad2")
    with pytest.raises(ValueError, match="at least one"):
        fit_many(o, [], seed=0, device="cpu", out_dir=tmp_path / "bad3")
