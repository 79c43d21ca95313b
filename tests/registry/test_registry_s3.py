"""The registry on S3-compatible storage (moto's server on loopback): same guarantees as locally."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nowcast.model_registry import (
    ChampionWatcher,
    LockHeldError,
    ModelRegistry,
    RegistryError,
    VersionExistsError,
    load_champion,
)


@pytest.fixture(scope="module")
def s3_options() -> Iterator[dict[str, Any]]:
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    srv = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    try:
        yield {"key": "testing", "secret": "testing", "endpoint_url": f"http://{host}:{port}", "region": "us-east-1"}
    finally:
        srv.stop()


@pytest.fixture
def bucket(s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    import boto3

    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    name = f"nowcast-models-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3", endpoint_url=s3_options["endpoint_url"], region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).create_bucket(Bucket=name)
    return name


def test_s3_registry_round_trip(bucket: str, s3_options: dict[str, Any], tmp_path: Path) -> None:
    url = f"s3://{bucket}/models"
    with pytest.raises(RegistryError, match="no model registry found"):
        ModelRegistry(url, s3_options)
    reg = ModelRegistry.create(url, s3_options)
    ck = tmp_path / "c.json"
    ck.write_text(json.dumps({"shifts": [[0, 1]] * 12, "cadence_minutes": 5}))
    reg.register(ck, model="test-shift", version_id="v1")
    with pytest.raises(VersionExistsError):  # conditional PUT (If-None-Match) on the manifest
        reg.register(ck, model="test-shift", version_id="v1")
    ck2 = tmp_path / "d.json"
    ck2.write_text(json.dumps({"shifts": [[1, 1]] * 12, "cadence_minutes": 5}))
    reg.register(ck2, model="test-shift", version_id="v2", parent="v1")
    reg.promote("v1")
    reg.promote("v2")
    assert reg.status().champion == "v2"
    w = ChampionWatcher(url, s3_options, cache_dir=tmp_path / "cache")
    vid, path = w.poll()
    assert vid == "v2" and path.read_bytes() == ck2.read_bytes() and str(path).startswith(str(tmp_path / "cache"))
    reg.rollback()
    assert w.poll()[0] == "v1"
    assert load_champion(url, s3_options, cache_dir=tmp_path / "cache").shifts[0] == (0, 1)
    with reg.lock(owner="job-a"):
        with pytest.raises(LockHeldError, match="held by job-a"):
            reg.lock(owner="job-b").acquire()
    reg.append_ledger({"n": 1})
    reg.append_ledger({"n": 2})
    assert [r["n"] for r in reg.read_ledger()] == [1, 2]
    assert [e["action"] for e in reg.events()][-3:] == ["promote", "promote", "rollback"]


def test_retrain_with_registry_on_s3(bucket: str, s3_options: dict[str, Any], synthetic_store: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import registry_tiny
    from registry_helpers import retrain_settings

    from training.retrain import RetrainConfig, run_retrain

    monkeypatch.setenv("NOWCAST_CACHE", str(tmp_path / "cache"))  # downloaded checkpoints (warm start, champion)
    url = f"s3://{bucket}/models"
    cfg = RetrainConfig.model_validate(
        retrain_settings(synthetic_store, url, tmp_path, registry_options=s3_options)
    )
    first = run_retrain(cfg, trainer=registry_tiny.shuffled_fit)
    second = run_retrain(cfg)
    assert (first.decision, second.decision) == ("promoted", "promoted"), second.reason
    reg = ModelRegistry(url, s3_options)
    assert reg.status().champion == second.challenger and reg.get(second.challenger).manifest["parent"] == first.challenger
    assert [r["decision"] for r in reg.read_ledger()] == ["promoted", "promoted"]
    assert not reg._s.exists("retrain.lock")
