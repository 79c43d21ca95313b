"""DDP (gloo, 2 CPU processes) gives the same model as single-process training."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from train_helpers import TINY_OPTIONS

from training.ddp import fit_local


@pytest.mark.slow
def test_two_ranks_match_one_process(run2: Path, tiny_store, splits, guide_cache: Path, tmp_path: Path) -> None:  # noqa: ANN001
    options = copy.deepcopy(TINY_OPTIONS)
    options["train"]["cache_dir"] = str(guide_cache)
    fit_local(2, store_url=tiny_store.url, options=options, train_times=splits[0], val_times=splits[1], seed=0, device="cpu", out_dir=tmp_path)
    single = torch.load(run2 / "last.pt", weights_only=True)
    multi = torch.load(tmp_path / "last.pt", weights_only=True)
    assert [r["epoch"] for r in multi["history"]] == [1, 2]
    for k, v in single["state_dict"].items():
        torch.testing.assert_close(multi["state_dict"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert multi["history"][-1]["train_loss"] == pytest.approx(single["history"][-1]["train_loss"], rel=1e-4)
