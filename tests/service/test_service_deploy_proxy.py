"""The multi-worker deployment: `python -m service.server`, the compose override and the nginx config agree with the settings."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.scale.yml").read_text())


def _nginx() -> str:
    return (DEPLOY / "nginx" / "nowcast.conf").read_text()


def test_compose_override_runs_api_only_workers_behind_nginx(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.server import build_parser
    from service.settings import ServiceSettings

    base = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = _compose()["services"]
    assert set(services) == {"api-workers", "proxy"} and "api" in base["services"]
    workers = services["api-workers"]
    assert workers["command"][:3] == ["python", "-m", "service.server"]
    args = build_parser().parse_args(workers["command"][3:])
    assert args.workers >= 2
    env = {k: v for k, v in workers["environment"].items() if k.startswith("NOWCAST_")}
    for k in list(os.environ):
        if k.startswith("NOWCAST_"):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = ServiceSettings()  # every variable is a valid setting
    assert settings.forecast_store == base["services"]["api"]["environment"]["NOWCAST_FORECAST_STORE"]
    assert settings.store == base["services"]["api"]["environment"]["NOWCAST_STORE"]
    # the forecasts store: the inference process's volume, read-only for the workers
    assert any(v.startswith("api-var:") and v.endswith(":ro") for v in workers["volumes"])
    proxy = services["proxy"]
    mounted = [v.split(":")[0] for v in proxy["volumes"]]
    assert "./nginx/nowcast.conf" in mounted and (DEPLOY / "nginx" / "nowcast.conf").is_file()
    upstream = re.search(r"upstream nowcast_api \{[^}]*server ([\w.-]+):(\d+)", _nginx())
    assert upstream is not None and upstream.group(1) == "api-workers" and int(upstream.group(2)) == settings.port


def test_nginx_limits_and_caching_match_the_api() -> None:
    from service.settings import ServiceSettings

    conf = _nginx()
    s = ServiceSettings()
    m = re.search(r"client_max_body_size (\d+)k;", conf)
    assert m is not None and int(m.group(1)) * 1024 == s.max_body_bytes
    m = re.search(r"large_client_header_buffers \d+ (\d+)k;", conf)
    assert m is not None and int(m.group(1)) * 1024 == s.max_header_bytes
    tiles = re.search(r"location ~ \^/v1/\(tiles\|maps[^{]*\{([^}]*)\}", conf)
    assert tiles is not None
    for directive in ("proxy_cache nowcast;", "proxy_cache_lock on;", "proxy_cache_revalidate on;"):
        assert directive in tiles.group(1)
    never = re.search(r"location ~ \^/\(v1/status\|v1/admin/\|metrics\) \{([^}]*)\}", conf)
    assert never is not None and "proxy_no_cache 1;" in never.group(1)
    assert conf.count("{") == conf.count("}")


def test_service_server_runs_several_workers(shared_env, free_port) -> None:  # noqa: ANN001
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOWCAST_")}
    env.update(
        NOWCAST_STORE=str(shared_env.settings.store),
        NOWCAST_FORECAST_STORE=str(shared_env.settings.forecast_store),
        PYSTEPS_SILENT_IMPORT="1",
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.server", "--workers", "2", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        ok = False
        while time.time() < deadline and proc.poll() is None:
            try:
                ok = httpx.get(url + "/v1/frames", timeout=5).status_code == 200
            except httpx.HTTPError:
                pass
            if ok:
                break
            time.sleep(0.5)
        assert ok, proc.stdout.read().decode()[-2000:] if proc.poll() is not None else "no answer"
        r = httpx.get(url + "/v1/tiles/rain/20250601T1200/7/67/45.png", timeout=30)
        assert r.status_code == 200 and r.headers["etag"]
        body = httpx.get(url + "/v1/status", timeout=30).json()
        assert body["model"] is None  # API only: no inference in these workers
        # every worker builds the same bytes for one store state: one ETag, and a 304 whichever worker answers
        etags = set()
        for _ in range(12):
            time.sleep(0.1)
            with httpx.Client() as fresh:  # a new connection: the kernel spreads them over the workers
                etags.add(fresh.get(url + "/v1/frames").headers["etag"])
        assert len(etags) == 1, etags
        (tag,) = etags
        for _ in range(6):
            with httpx.Client() as fresh:
                assert fresh.get(url + "/v1/frames", headers={"If-None-Match": tag}).status_code == 304
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
