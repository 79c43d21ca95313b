"""Windows, guide cache, crops and augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nowcast.models.network import ModelConfig
from training.config import TrainOptions
from training.dataset import WindowDataset, select_windows


@pytest.fixture
def cfg() -> ModelConfig:
    return ModelConfig(n_inputs=3, n_leads=4, channels=[6, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4)


def test_guides_are_computed_once_and_cached(tiny_store, splits, cfg: ModelConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    times = splits[0][:4]
    first = select_windows(tiny_store, times, cfg, TrainOptions(), tmp_path)
    assert len(first) == 4 and all(Path(w.guide_file).is_file() for w in first)

    def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("guide recomputed although cached")

    import nowcast.models.convlstm as convlstm_mod

    monkeypatch.setattr(convlstm_mod, "guide_features", boom)
    again = select_windows(tiny_store, times, cfg, TrainOptions(), tmp_path)
    assert again == first
    # other guide settings -> other cache entries (never a stale guide)
    monkeypatch.undo()
    other = select_windows(tiny_store, times, cfg.model_copy(update={"oflow_inputs": 2}), TrainOptions(), tmp_path)
    assert {w.guide_file for w in other}.isdisjoint({w.guide_file for w in first})


def test_wet_filter(tiny_store, splits, cfg: ModelConfig, tmp_path: Path) -> None:  # noqa: ANN001
    all_w = select_windows(tiny_store, splits[0], cfg.model_copy(update={"advection": "none"}), TrainOptions(min_wet_fraction=0.0), tmp_path)
    assert len(all_w) == len(splits[0])
    wet = []
    for t in splits[0]:
        last = tiny_store.window(t, 1)["rain_rate"].values[0]
        wet.append(np.mean(last[np.isfinite(last)] >= 0.1))
    cut = float(np.median(wet))
    some = select_windows(tiny_store, splits[0], cfg.model_copy(update={"advection": "none"}), TrainOptions(min_wet_fraction=cut), tmp_path)
    assert len(some) == sum(w >= cut for w in wet)


def test_augmentation_is_identical_for_inputs_guide_and_targets(tiny_store, splits, cfg: ModelConfig, tmp_path: Path) -> None:  # noqa: ANN001
    windows = select_windows(tiny_store, splits[0][:3], cfg, TrainOptions(), tmp_path)
    kw = dict(train=True, seed=5, grid_shape=tiny_store.grid.shape)
    plain = WindowDataset(tiny_store.url, windows, cfg, 32, augment=False, **kw)
    aug = WindowDataset(tiny_store.url, windows, cfg, 32, augment=True, **kw)
    seen = set()
    for epoch in range(4):
        plain.set_epoch(epoch)
        aug.set_epoch(epoch)
        for i in range(len(windows)):
            a, b = plain[i], aug[i]
            # find the transform from the inputs, then check it maps every array
            x, y = a["inputs"].numpy(), b["inputs"].numpy()
            match = [(k, f) for k in range(4) for f in (False, True) if np.array_equal(np.rot90(x[..., ::-1] if f else x, k, axes=(-2, -1)), y)]
            assert match, "augmented inputs are not a flip/rotation of the plain ones"
            k, f = match[0]
            seen.add((k, f))
            assert a["cell_size_m"] == b["cell_size_m"] == tiny_store.grid.cell_size_m  # per-item scalar, not transformed
            for key in (key for key in a if key != "cell_size_m"):
                want = np.rot90(a[key].numpy()[..., ::-1] if f else a[key].numpy(), k, axes=(-2, -1))
                np.testing.assert_array_equal(b[key].numpy(), want, err_msg=key)
    assert len(seen) > 1


def test_crops_vary_with_epoch_and_are_reproducible(tiny_store, splits, cfg: ModelConfig, tmp_path: Path) -> None:  # noqa: ANN001
    windows = select_windows(tiny_store, splits[0][:2], cfg, TrainOptions(), tmp_path)
    d = WindowDataset(tiny_store.url, windows, cfg, 32, train=True, augment=True, seed=1)
    first = d[0]["inputs"].clone()
    assert first.shape == (3, 3, 32, 32)
    d.set_epoch(1)
    assert not np.array_equal(d[0]["inputs"].numpy(), first.numpy())
    d.set_epoch(0)
    np.testing.assert_array_equal(d[0]["inputs"].numpy(), first.numpy())


def test_full_frame_validation_is_padded_and_masked(tiny_store, splits, cfg: ModelConfig, tmp_path: Path) -> None:  # noqa: ANN001
    c = cfg.model_copy(update={"strides": [2, 3]})  # multiple 6: 64 -> 66
    windows = select_windows(tiny_store, splits[1][:1], c, TrainOptions(), tmp_path)
    item = WindowDataset(tiny_store.url, windows, c, None, train=False, augment=False, seed=0)[0]
    assert item["inputs"].shape[-2:] == (66, 66)
    assert item["guide"].shape == (4, 2, 66, 66)
    assert not item["mask"][:, 64:, :].any() and not item["mask"][:, :, 64:].any()
    assert item["mask"][:, :64, :64].all()
