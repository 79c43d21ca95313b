"""Crash recovery of the observation store on S3-compatible storage (moto's server on loopback):
the state a killed creation or a killed append leaves is finished / repaired as on a local disk."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nowcast import dims, storage
from nowcast.grid import Grid
from nowcast.store import ObservationStore, StoreError

GRID = Grid.from_bounds("EPSG:3035", 4_000_000, 2_500_000, 4_040_000, 2_530_000, 1000)
T0 = pd.Timestamp("2024-06-01 12:00")


def _frame(t: pd.Timestamp, value: float):
    return dims.make_frames(np.full(GRID.shape, value, np.float32), t, GRID.x, GRID.y, GRID.crs_wkt)


def test_interrupted_creation_and_stale_root_marker_on_s3(moto_s3, s3_bucket) -> None:
    opts = moto_s3.options()
    url = f"s3://{s3_bucket}/obs/recover.zarr"
    fs, base = storage.filesystem(url, storage.prepare(url, opts))
    # what a creation killed after its first write leaves: the root document with the flag
    doc = {"zarr_format": 3, "node_type": "group", "attributes": {"creating": "2024-06-01T00:00:00+00:00"}}
    fs.pipe_file(f"{base}/zarr.json", json.dumps(doc).encode())
    with pytest.raises(StoreError, match="was interrupted"):
        ObservationStore.open(url, storage_options=opts)
    store = ObservationStore.open_or_create(url, GRID, storage_options=opts)
    assert store.append(_frame(T0, 1.0), source="radar") and store.append(_frame(T0 + pd.Timedelta("5min"), 2.0), source="radar")

    # what a kill between the slot marker and the root marker leaves: last_complete one behind
    root = json.loads(fs.cat_file(f"{base}/zarr.json"))
    root["attributes"].update(last_complete=T0.isoformat(), frames_written=1, frames_by_source={"radar": 1})
    fs.pipe_file(f"{base}/zarr.json", json.dumps(root).encode())
    assert ObservationStore.open(url, storage_options=opts).last_complete() == T0
    writer = ObservationStore.open(url, "a", storage_options=opts)
    assert writer.last_complete() == T0 + pd.Timedelta("5min")
    assert writer.frames_by_source() == {"radar": 2} and writer.version.startswith("2.0.")
