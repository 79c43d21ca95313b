"""The live defaults: the shipped synthetic ConvLSTM as the registry champion, its card, the fallback."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.models.weights import default_checkpoint
from service.settings import LIVE_MODEL_DEFAULTS, ServiceSettings, live_model_defaults

pytest.importorskip("torch")


def test_live_defaults_apply_only_when_nothing_chooses_a_model() -> None:
    assert live_model_defaults({}, {}) == LIVE_MODEL_DEFAULTS
    assert live_model_defaults({"port": 9000}, {}) == {**LIVE_MODEL_DEFAULTS, "port": 9000}
    for data in ({"model": "sprog"}, {"checkpoint": "x.pt"}, {"model_registry": "r"}, {"run_ingest": False}, {"ingest": {"source": "replay"}}):
        assert live_model_defaults(data, {}) == data, data
    for env in ({"NOWCAST_MODEL": "persistence"}, {"NOWCAST_MODEL_REGISTRY": "s3://m"}, {"NOWCAST_INGEST__SOURCE": "replay"}):
        assert live_model_defaults({}, env) == {}, env
    with pytest.raises(ValueError, match="shipped_champion needs model_registry"):
        ServiceSettings(shipped_champion="synthetic")


def test_shipped_synthetic_weights_become_the_champion_with_their_card(tmp_path, helpers) -> None:  # noqa: ANN001
    from nowcast.model_registry import ModelRegistry, sha256_file

    registry = tmp_path / "models"
    e = helpers.env(tmp_path, model="extrapolation", model_registry=str(registry), shipped_champion="synthetic")
    try:
        st = e.client.get("/v1/status").json()
        model = st["model"]
        assert model["active"] == "convlstm" and model["fallback"] is False, model
        assert model["registry_version"] and model["version"] == model["registry_version"]
        assert st["forecast"]["model"] == "convlstm"
        assert model["card_url"] == "/v1/model/card"
        assert "at least one lightning stroke" in model["lightning_probability"]
        card = e.client.get(model["card_url"]).json()
        assert card["shipped_sha256"] == sha256_file(default_checkpoint("synthetic"))
        assert card["train_seconds"] > 0 and card["lightning_probability"] == model["lightning_probability"]
        reg = ModelRegistry(registry)
        assert reg.status().champion == model["registry_version"]
        # the served lightning probability is the calibrated one, inside [0, 1]
        _, _, prob = e.app.state.access.forecasts().read_run(e.loop.status.last_init_time)
        assert np.nanmin(prob) >= 0 and np.nanmax(prob) <= 1
        assert e.loop.model.lightning_calibration is not None
    finally:
        e.client.__exit__(None, None, None)
    # a second start on the same registry keeps its champion (no second registration)
    e2 = helpers.env(tmp_path / "again", model_registry=str(registry), shipped_champion="synthetic")
    try:
        assert e2.loop.model_status.registry_version == model["registry_version"]
        assert len(ModelRegistry(registry).version_ids()) == 1
    finally:
        e2.client.__exit__(None, None, None)


def test_missing_shipped_weights_fall_back_to_extrapolation_and_say_so(tmp_path, helpers, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("nowcast.models.weights.WEIGHTS_DIR", tmp_path / "no-weights")
    e = helpers.env(tmp_path, model="extrapolation", model_registry=str(tmp_path / "models"), shipped_champion="synthetic")
    try:
        st = e.client.get("/v1/status").json()
        assert st["model"]["active"] == "extrapolation" and st["model"]["fallback"] is True
        assert "no champion" in st["model"]["message"] and "not installed" in st["model"]["message"]
        assert st["model"]["card_url"] is None
        assert st["status"] == "degraded"
        assert e.client.get("/v1/model/card").status_code == 404
    finally:
        e.client.__exit__(None, None, None)
