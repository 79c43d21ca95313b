"""Units of the service: colour scales, tile maths, the bounded cache, settings and the serve CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nowcast import plotting
from service.cache import LRUCache
from service.tiles import TileError, check_tile, lonlat_to_tile, tile_bounds


def test_rain_colours_are_discrete_and_transparent_when_dry_or_missing() -> None:
    values = np.array([np.nan, 0.0, 0.05, 0.1, 0.2, 0.25, 1.0, 99.0, 100.0, 500.0], dtype=np.float32)
    rgba = plotting.colorize(values, "rain")
    assert rgba.dtype == np.uint8 and rgba.shape == (10, 4)
    assert (rgba[:3, 3] == 0).all()  # NaN, dry, below 0.1 mm/h
    assert (rgba[3:, 3] == 255).all()
    scale = plotting.RAIN_SCALE
    hexes = ["#{:02x}{:02x}{:02x}".format(*c[:3]) for c in rgba[3:]]
    assert hexes == [scale.colors[0], scale.colors[0], scale.colors[1], scale.colors[4], scale.colors[13], scale.colors[14], scale.colors[14]]


@pytest.mark.parametrize("layer", ["rain", "lightning"])
def test_level_index_counts_the_levels_at_or_below_each_value(layer: str) -> None:
    scale = plotting.get_scale(layer)
    levels = np.asarray(scale.levels, dtype=np.float32)
    rng = np.random.default_rng(3)
    values = np.concatenate([
        rng.gamma(0.5, levels[-1] / 2, size=4000).astype(np.float32),
        levels, np.nextafter(levels, np.float32(-np.inf)),  # on each level and just below it
        np.array([np.nan, np.inf, -np.inf, -5.0, 0.0], dtype=np.float32),
    ]).reshape(-1, 3)[:, ::-1]  # a strided 2-D view
    idx = plotting.level_index(values, scale)
    expected = np.array([np.count_nonzero(levels <= v) for v in values.ravel()]).reshape(values.shape)
    assert idx.dtype == np.uint8 and idx.shape == values.shape
    np.testing.assert_array_equal(idx, expected)  # NaN: 0, +inf: every level
    assert idx[np.isnan(values)].tolist() == [0]


def test_lightning_scale_and_legend() -> None:
    rgba = plotting.colorize(np.array([np.nan, 0.005, 0.01, 0.04, 0.95, 1.0]), "lightning", alpha=200)
    assert list(rgba[:, 3]) == [0, 0, 200, 200, 200, 200]
    scale = plotting.get_scale("lightning")
    hexes = ["#{:02x}{:02x}{:02x}".format(*c[:3]) for c in rgba[2:]]
    assert hexes == [scale.colors[0], scale.colors[1], scale.colors[-1], scale.colors[-1]]
    legend = scale.legend()
    assert [e["label"] for e in legend] == ["1", "2", "5", "10", "20", "30", "50", "70", "90"] and legend[-1]["upper"] is None
    with pytest.raises(ValueError, match="unknown layer 'hail'; valid: lightning, rain"):
        plotting.get_scale("hail")


def test_map_figure_renders_png() -> None:
    rng = np.random.default_rng(1)
    field = rng.gamma(0.4, 3.0, (40, 50)).astype(np.float32)
    field[:5] = np.nan
    fig = plotting.map_figure(field, (0, 50, 0, 40), "rain", "Rain rate observed 2025-06-01T12:00:00Z")
    png = plotting.figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_tile_maths() -> None:
    assert tile_bounds(0, 0, 0) == pytest.approx((-20037508.34, -20037508.34, 20037508.34, 20037508.34), rel=1e-9)
    xmin, ymin, xmax, ymax = tile_bounds(1, 1, 0)  # north-east quadrant
    assert xmin == pytest.approx(0) and ymin == pytest.approx(0) and xmax > 0 and ymax > 0
    assert lonlat_to_tile(0.001, 0.001, 1) == (1, 0)
    assert lonlat_to_tile(8.5, 47.4, 8) == (134, 89)
    check_tile(3, 7, 7, 0, 12)
    with pytest.raises(TileError, match="zoom 13 outside the served range 0..12"):
        check_tile(13, 0, 0, 0, 12)
    with pytest.raises(TileError, match="outside the tile matrix of zoom 3"):
        check_tile(3, 8, 0, 0, 12)
    assert math.isfinite(tile_bounds(22, 0, 0)[0])


def test_lru_cache_is_bounded() -> None:
    cache: LRUCache[int] = LRUCache(3)
    for i in range(10):
        cache.put(("k", i), i)
    assert len(cache) == 3 and ("k", 9) in cache and ("k", 0) not in cache
    assert cache.get(("k", 7)) == 7
    cache.put(("k", 10), 10)  # evicts the least recently used (8), not 7
    assert ("k", 7) in cache and ("k", 8) not in cache
    assert cache.get_or_compute(("k", 11), lambda: 11) == 11
    assert cache.hits == 1 and cache.misses == 1
    with pytest.raises(ValueError, match="max_items must be >= 1"):
        LRUCache(0)


def test_lru_cache_byte_budget() -> None:
    cache: LRUCache[np.ndarray] = LRUCache(100, max_bytes=4000)
    for i in range(5):
        cache.put(i, np.zeros(250, dtype=np.float32))  # 1000 bytes each
    assert len(cache) == 4 and cache.nbytes == 4000 and 0 not in cache
    cache.put("big", np.zeros(5000, dtype=np.float32))  # larger than the budget: kept alone
    assert len(cache) == 1 and "big" in cache and cache.nbytes == 20000
    cache.put("big", np.zeros(10, dtype=np.float32))
    assert cache.nbytes == 40


def test_lru_cache_computes_a_key_once_for_concurrent_threads() -> None:
    """Threads missing the same key wait for the one computing it; a failure goes to its caller and
    the next waiter computes the value itself."""
    import threading
    import time

    cache: LRUCache[int] = LRUCache(8)
    calls: list[int] = []
    go = threading.Barrier(6)

    def slow() -> int:
        calls.append(1)
        time.sleep(0.2)
        return 42

    out: list[int] = []

    def ask() -> None:
        go.wait()
        out.append(cache.get_or_compute("k", slow))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [42] * 6 and len(calls) == 1
    attempts: list[int] = []

    def flaky() -> int:
        attempts.append(1)
        time.sleep(0.1)
        if len(attempts) == 1:
            raise OSError("store hiccup")
        return 7

    errors: list[Exception] = []
    values: list[int] = []

    def ask2() -> None:
        try:
            values.append(cache.get_or_compute("f", flaky))
        except OSError as exc:
            errors.append(exc)

    first = threading.Thread(target=ask2)
    first.start()
    time.sleep(0.02)
    second = threading.Thread(target=ask2)
    second.start()
    first.join()
    second.join()
    assert len(errors) == 1 and values == [7] and len(attempts) == 2


def test_settings_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.settings import ServiceSettings

    monkeypatch.setenv("NOWCAST_PORT", "9123")
    monkeypatch.setenv("NOWCAST_MODEL", "persistence")
    monkeypatch.setenv("NOWCAST_API_KEY", "zebra-42")
    s = ServiceSettings()
    assert s.port == 9123 and s.model == "persistence" and s.api_key_value() == "zebra-42"
    assert "zebra-42" not in repr(s)  # the key is a secret
    with pytest.raises(ValueError, match="lead_minutes"):
        ServiceSettings(lead_minutes=[10, 5])


def test_serve_rejects_bad_settings_before_starting(tmp_path, capsys) -> None:  # noqa: ANN001
    from cli import main

    bad = tmp_path / "serve.toml"
    bad.write_text('port = "eighty"\nno_such_key = 1\n')
    assert main(["serve", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "port" in err and "no_such_key" in err and str(bad) in err
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize(
    ("crs", "x0", "y0", "res", "zooms"),
    [
        ("EPSG:3035", 4_200_000.0, 2_700_000.0, 1000.0, (5, 7, 9, 11)),  # LAEA over the Alps
        ("EPSG:3413", -500_000.0, -500_000.0, 2000.0, (3, 5, 7)),  # polar stereographic near the pole: fallbacks
    ],
)
def test_interpolated_tile_index_matches_exact_reprojection(crs: str, x0: float, y0: float, res: float, zooms: tuple[int, ...]) -> None:
    """The lattice interpolation picks the exact nearest cell except for pixels within 1/100 cell of a cell edge
    (the error is checked to 1/1000 cell at the centres of the lattice cells; elsewhere it stays within a few times that)."""
    from pyproj import Transformer

    from nowcast.grid import Grid
    from service.tiles import TILE_SIZE, TileSampler

    grid = Grid.regular(crs, x0, y0 + 400 * res, res, -res, 400, 400, name="t")
    sampler = TileSampler(grid)
    to_grid = Transformer.from_crs("EPSG:3857", grid.crs, always_xy=True)
    lon0, lat0, lon1, lat1 = grid.bbox_lonlat()
    checked = 0
    for z in zooms:
        tx, ty = lonlat_to_tile((lon0 + lon1) / 2, (lat0 + lat1) / 2, z)
        idx = sampler.index(z, tx, ty)
        assert idx.shape == (TILE_SIZE, TILE_SIZE)
        xmin, _, xmax, ymax = tile_bounds(z, tx, ty)
        step = (xmax - xmin) / TILE_SIZE
        c = np.arange(TILE_SIZE) + 0.5
        gx, gy = to_grid.transform(*np.meshgrid(xmin + c * step, ymax - c * step))
        row, col, inside = grid.index_of(gx, gy)
        exact = np.where(inside, row * grid.shape[1] + col, -1)
        differ = exact != idx
        assert differ.mean() < 1e-3, (z, differ.sum())
        # where they differ, the pixel lies within 1/100 cell of a cell edge (either cell is about as near)
        fx, fy = (gx - grid.x[0]) / grid.dx, (gy - grid.y[0]) / grid.dy
        edge = np.minimum(np.abs(fx - np.floor(fx) - 0.5), np.abs(fy - np.floor(fy) - 0.5))
        assert (edge[differ] < 1e-2).all()
        checked += int(inside.sum())
    assert checked > 0


def test_background_work_sleeps_for_its_share_of_the_wall_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from service import data

    slept: list[float] = []
    monkeypatch.setattr(data.time, "sleep", slept.append)
    data.yield_to_requests(0.01, 0.25)  # 10 ms of work at a quarter of the time: 30 ms asleep
    data.yield_to_requests(0.01, 0.5)
    data.yield_to_requests(1.0, 0.5)  # capped
    data.yield_to_requests(0.01, 1.0)  # no sleeping
    assert slept == pytest.approx([0.03, 0.01, data.PREWARM_YIELD_MAX_S])


def test_gc_pauses_are_observed_while_watched() -> None:
    import gc
    import re

    from service.metrics import ServiceMetrics

    metrics = ServiceMetrics(ages=lambda: (None, None), cache_stats=lambda: (0, 0))

    def full_collections() -> float:
        m = re.search(rb'nowcast_gc_pause_seconds_count\{generation="2"\} ([0-9.e+]+)', metrics.render())
        return float(m.group(1)) if m else 0.0

    unwatch = metrics.watch_gc()
    try:
        gc.collect()
        gc.collect()
    finally:
        unwatch()
    assert full_collections() == 2.0
    gc.collect()  # no longer watched
    assert full_collections() == 2.0
    unwatch()  # twice is harmless
