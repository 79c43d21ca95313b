"""Resolution of storage options for local paths and s3:// URLs (no server needed)."""

from __future__ import annotations

import pytest

from nowcast import storage


def test_local_paths_need_no_options(tmp_path):
    assert storage.storage_options(str(tmp_path / "obs.zarr"), {"key": "k"}) is None
    assert storage.storage_options("file:///tmp/x.zarr") is None
    assert not storage.is_remote("var/obs.zarr")
    assert storage.is_remote("s3://bucket/obs.zarr")
    assert storage.join("s3://b/p/", "runs", "/x") == "s3://b/p/runs/x"


def test_environment_precedence_and_timeouts():
    env = {
        "AWS_ACCESS_KEY_ID": "aws-key",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "NOWCAST_S3_SECRET": "nowcast-secret",
        "AWS_ENDPOINT_URL": "http://generic:1",
        "AWS_ENDPOINT_URL_S3": "http://s3-specific:2",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "NOWCAST_S3_READ_TIMEOUT": "7.5",
        "NOWCAST_S3_MAX_ATTEMPTS": "2",
    }
    opts = storage.storage_options("s3://bucket/obs.zarr", None, environ=env)
    assert opts["key"] == "aws-key"  # AWS fallback
    assert opts["secret"] == "nowcast-secret"  # NOWCAST_S3_* beats AWS_*
    assert opts["endpoint_url"] == "http://s3-specific:2"  # the S3-specific AWS variable first
    assert opts["client_kwargs"] == {"region_name": "eu-west-1"}
    cfg = opts["config_kwargs"]
    assert cfg["read_timeout"] == 7.5
    assert cfg["connect_timeout"] == storage.DEFAULT_CONNECT_TIMEOUT
    assert cfg["retries"] == {"max_attempts": 2, "mode": "standard"}
    assert opts["use_listings_cache"] is False


def test_explicit_options_win_and_resolution_is_idempotent():
    env = {"NOWCAST_S3_KEY": "env-key", "NOWCAST_S3_ENDPOINT_URL": "http://env:9000"}
    given = {"key": "cfg-key", "secret": "cfg-secret", "region": "auto", "connect_timeout": 1, "cache_regions": False}
    opts = storage.storage_options("s3://b/p", given, environ=env)
    assert opts["key"] == "cfg-key" and opts["secret"] == "cfg-secret"
    assert opts["endpoint_url"] == "http://env:9000"
    assert opts["config_kwargs"]["connect_timeout"] == 1.0
    assert opts["cache_regions"] is False  # other s3fs options pass through verbatim
    assert storage.storage_options("s3://b/p", opts, environ={}) == opts
    assert "cfg-secret" not in storage.describe("s3://b/p", opts)


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [("NOWCAST_S3_READ_TIMEOUT", "soon", "expected a number"), ("NOWCAST_S3_MAX_ATTEMPTS", "0", "must be positive"), ("NOWCAST_S3_ANON", "maybe", "true or false")],
)
def test_bad_environment_values_are_named(var, value, expected):
    with pytest.raises(storage.StorageError, match=f"{var}.*{expected}"):
        storage.storage_options("s3://b/p", None, environ={var: value})


def test_bucket_is_required():
    with pytest.raises(storage.StorageError, match="no bucket"):
        storage.check_access("s3:///prefix", storage.storage_options("s3:///prefix", environ={}))


def test_storage_env_vars_do_not_disturb_service_settings(monkeypatch):
    """NOWCAST_S3_* share the service's env prefix; the settings class must ignore them."""
    settings_mod = pytest.importorskip("service.settings")
    monkeypatch.setenv("NOWCAST_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("NOWCAST_S3_KEY", "k")
    s = settings_mod.ServiceSettings()
    assert not any(name.startswith("s3") for name in type(s).model_fields)


def test_probe_deadline_bounds_a_silent_endpoint():
    """Whatever the client timeouts, check_access returns within its own deadline."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)  # accepts connections, never answers
        url = "s3://bucket/obs.zarr"
        opts = storage.storage_options(url, {"key": "k", "secret": "s", "endpoint_url": f"http://127.0.0.1:{s.getsockname()[1]}"}, environ={})
        assert opts["config_kwargs"]["read_timeout"] == storage.DEFAULT_READ_TIMEOUT  # longer than the deadline
        start = time.monotonic()
        with pytest.raises(storage.StorageError, match=r"no answer within 1.5 s; check NOWCAST_S3_ENDPOINT_URL"):
            storage.check_access(url, opts, timeout=1.5)
        assert time.monotonic() - start < 4
