"""Splits on a dask LocalCluster (2 worker processes) give exactly the in-process results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.dap.plan import load_plan
from training.dap.runner import evaluate


@pytest.mark.slow
def test_local_cluster_two_workers_equals_in_process(plan_dict, tiny_store, tmp_path) -> None:
    pytest.importorskip("distributed")
    plan = load_plan(data=plan_dict(tiny_store))
    local = evaluate(plan, tmp_path / "local", workers=0, report=False)
    dist = evaluate(plan, tmp_path / "dask", workers=2, report=False)
    for name, var in local.results.data_vars.items():
        assert np.array_equal(var.values, dist.results[name].values, equal_nan=True), name
    recs = [json.loads(x) for x in dist.ledger.read_text().splitlines()]
    assert "LocalCluster (2 workers" in recs[-1]["mode"]
    fp_local = [
        json.loads(x)["data_fingerprint"]
        for x in local.ledger.read_text().splitlines()
        if '"split"' in x and '"event": "split"' in x
    ]
    fp_dist = sorted((r["split"], r["data_fingerprint"]) for r in recs if r["event"] == "split")
    assert [f for _, f in fp_dist] == fp_local
