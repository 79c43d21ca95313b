"""The shipped ingest configurations validate, and a new-frame notice they send to the local
service goes to a route that exists (issue 13, item 7: ingest-dwd.toml posted to a 404)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (REPO / "configs").glob("ingest-*") if p.suffix in (".toml", ".yaml", ".yml"))


@pytest.fixture(scope="module")
def post_routes(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    from service.app import create_app
    from service.settings import ServiceSettings

    tmp = tmp_path_factory.mktemp("app")
    app = create_app(ServiceSettings(store=str(tmp / "obs.zarr"), forecast_store=str(tmp / "fc.zarr"), run_ingest=False))
    return {path for path, ops in app.openapi()["paths"].items() if "post" in ops}


def test_configs_are_found() -> None:
    assert any(p.name == "ingest-dwd.toml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_ingest_config_validates_and_notifies_an_existing_route(path: Path, post_routes: set[str]) -> None:
    from ingest.config import load_ingest_config

    cfg = load_ingest_config(path)
    if not cfg.notify_url:
        return
    url = urlsplit(cfg.notify_url)
    if url.hostname in ("127.0.0.1", "localhost", "::1"):
        assert url.path in post_routes, f"{path.name}: notify_url {cfg.notify_url} is not a POST route of the service ({sorted(post_routes)})"


def test_the_route_check_catches_the_old_dwd_url(post_routes: set[str]) -> None:
    assert "/v1/admin/new-frame" not in post_routes
    assert "/v1/admin/forecast" in post_routes
