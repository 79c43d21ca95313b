"""One code version and one content fingerprint for checkpoints, cards, registry and ledgers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nowcast import provenance
from training.dap.ledger import code_version as ledger_version


def test_every_stamp_is_the_same_code_version() -> None:
    """Ledgers, checkpoints, model cards and the registry stamp provenance's one code version
    (no module keeps a code_version of its own)."""
    from nowcast.model_registry import versions
    from training import api, checkpoint, model_card

    v = provenance.code_version()
    assert ledger_version is provenance.code_version and ledger_version() == v
    assert versions.code_version_string is api.code_version_string is model_card.code_version_string is provenance.code_version_string
    assert not hasattr(checkpoint, "code_version") and not hasattr(versions, "code_version")
    if v["commit"]:
        assert v["commit"][:10] in provenance.code_version_string()


def test_fingerprint_is_content_not_write_count(tmp_path: Path, monkeypatch) -> None:
    from nowcast.sources.synthetic import SyntheticRadar
    from nowcast.store import ObservationStore

    src = SyntheticRadar(SyntheticRadar.default_grid(nx=16, ny=16), seed=3)
    times = pd.date_range("2024-06-01T12:00", periods=3, freq="5min")
    a = ObservationStore.create(str(tmp_path / "a.zarr"), src.grid, cadence=pd.Timedelta("5min"))
    b = ObservationStore.create(str(tmp_path / "b.zarr"), src.grid, cadence=pd.Timedelta("5min"))
    for t in times:
        a.append(src.frame(t)["rain_rate"])
    for t in times[::-1]:  # other write order, same content
        b.append(src.frame(t)["rain_rate"])
    assert provenance.data_fingerprint(a) == provenance.data_fingerprint(b)
    # batched reads hash the same bytes as frame-by-frame reads, whatever the batch size
    import hashlib

    ref = hashlib.sha256()
    for t in a.times():
        ref.update(np.ascontiguousarray(np.nan_to_num(a.window(t, 1)["rain_rate"].values, nan=-1.0)).tobytes())
    assert provenance.data_fingerprint(a) == ref.hexdigest()[:16]
    monkeypatch.setattr(provenance, "_BATCH_CELLS", 2 * 16 * 16)
    assert provenance.data_fingerprint(a) == ref.hexdigest()[:16]
    frame = src.frame(times[1])["rain_rate"].copy()
    frame.values[..., 0, 0] = np.float32(frame.values[..., 0, 0] + 1.0)
    a.append(frame, overwrite=True)
    assert provenance.data_fingerprint(a) != provenance.data_fingerprint(b)


def test_a_copy_without_git_metadata_names_its_commit_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    """A checkout copied without ``.git`` (a batch or GPU machine) records NOWCAST_CODE_COMMIT;
    without it the commit is unknown (None), never made up. A git checkout ignores the variable."""
    monkeypatch.setattr(provenance, "REPO", tmp_path)  # not a git repository
    monkeypatch.delenv("NOWCAST_CODE_COMMIT", raising=False)
    assert provenance._git.__wrapped__() == (None, None)
    monkeypatch.setenv("NOWCAST_CODE_COMMIT", "0123abcd")
    assert provenance._git.__wrapped__() == ("0123abcd", None)
    monkeypatch.setattr(provenance, "REPO", Path(__file__).resolve().parents[1])
    assert provenance._git.__wrapped__()[0] != "0123abcd"
