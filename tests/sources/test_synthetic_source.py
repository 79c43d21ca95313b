"""SyntheticRadar: determinism, data model, motion, statistics and lightning placement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nowcast import dims
from nowcast.grid import Grid
from nowcast.sources.synthetic import SyntheticRadar

T = pd.Timestamp("2026-06-01 12:00")


@pytest.fixture(scope="module")
def radar() -> SyntheticRadar:
    return SyntheticRadar(seed=11)


def test_frame_follows_the_data_model(radar: SyntheticRadar) -> None:
    ds = radar.frame(T)
    for name in (dims.RAIN_RATE, dims.LIGHTNING):
        da = ds[name]
        assert da.dims == (dims.Y, dims.X)
        assert da.dtype == np.float32
        assert np.isfinite(da.values).all()
    dims.validate_frames(ds[dims.RAIN_RATE])
    assert ds[dims.TIME].values == np.datetime64(T)
    assert dims.crs_of(ds).to_epsg() == 3035
    assert Grid.of(ds).same_as(radar.grid)
    assert radar.grid.shape == (256, 256)
    assert "synthetic" in ds.attrs["comment"]


def test_deterministic_for_seed_and_time_without_history() -> None:
    a = SyntheticRadar(seed=5)
    b = SyntheticRadar(seed=5)
    # a generates a sequence first (warm caches), b jumps straight to the target time
    for t in pd.date_range(T - pd.Timedelta("2h"), T, freq="20min"):
        a.frame(t)
    fa, fb = a.frame(T), b.frame(T)
    np.testing.assert_array_equal(fa[dims.RAIN_RATE].values, fb[dims.RAIN_RATE].values)
    np.testing.assert_array_equal(fa[dims.LIGHTNING].values, fb[dims.LIGHTNING].values)
    # a far-away time is generated directly
    far = b.frame(T + pd.Timedelta(days=400))
    assert far[dims.RAIN_RATE].shape == (256, 256)
    other = SyntheticRadar(seed=6).frame(T)
    assert not np.array_equal(other[dims.RAIN_RATE].values, fa[dims.RAIN_RATE].values)


def _best_shift(a: np.ndarray, b: np.ndarray, max_shift: int) -> tuple[int, int]:
    """(drow, dcol) maximising the correlation of b with a shifted by (drow, dcol)."""
    best, arg = -np.inf, (0, 0)
    m = max_shift
    core = b[m:-m, m:-m]
    core = (core - core.mean()) / core.std()
    for dr in range(-m, m + 1):
        for dc in range(-m, m + 1):
            win = a[m - dr : a.shape[0] - m - dr, m - dc : a.shape[1] - m - dc]
            c = float(np.mean(core * (win - win.mean()) / win.std()))
            if c > best:
                best, arg = c, (dr, dc)
    return arg


def test_motion_matches_cross_correlation(radar: SyntheticRadar) -> None:
    t1 = T + pd.Timedelta("15min")
    a = np.log1p(radar.frame(T)[dims.RAIN_RATE].values)
    b = np.log1p(radar.frame(t1)[dims.RAIN_RATE].values)
    dx, dy = radar.displacement(T, t1)
    res = radar.grid.resolution
    expected = (-dy / res, dx / res)  # north-up grid: northward motion = decreasing row
    assert np.hypot(*expected) > 2.0, "test needs a measurable displacement"
    found = _best_shift(a, b, max_shift=10)
    assert abs(found[0] - expected[0]) <= 1.0 and abs(found[1] - expected[1]) <= 1.0, (found, expected)
    u, v = radar.motion(T)
    assert 3.0 < np.hypot(u, v) < 25.0


def test_fields_evolve_growth_and_decay(radar: SyntheticRadar) -> None:
    """Correlation in the moving frame decays with the lag (the field is not frozen)."""

    def lagrangian_corr(lag: pd.Timedelta) -> float:
        a = np.log1p(radar.frame(T)[dims.RAIN_RATE].values)
        b = np.log1p(radar.frame(T + lag)[dims.RAIN_RATE].values)
        dx, dy = radar.displacement(T, T + lag)
        dr, dc = int(round(-dy / radar.grid.resolution)), int(round(dx / radar.grid.resolution))
        b_back = np.roll(b, (-dr, -dc), axis=(0, 1))
        m = 40
        return float(np.corrcoef(a[m:-m, m:-m].ravel(), b_back[m:-m, m:-m].ravel())[0, 1])

    short, long = lagrangian_corr(pd.Timedelta("5min")), lagrangian_corr(pd.Timedelta("3h"))
    assert short > 0.8
    assert long < short - 0.3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dry_fraction_and_intensities_are_realistic(seed: int) -> None:
    r = SyntheticRadar(seed=seed)
    times = pd.date_range(T, periods=8, freq="97min")
    dry, medians, below5, maxima = [], [], [], []
    for t in times:
        rain = r.frame(t)[dims.RAIN_RATE].values
        wet = rain[rain > 0]
        dry.append(1 - wet.size / rain.size)
        medians.append(np.median(wet))
        below5.append(np.mean(wet < 5))
        maxima.append(rain.max())
        assert rain.min() >= 0
    assert all(0.5 <= d <= 0.97 for d in dry), dry
    assert 0.6 <= np.mean(dry) <= 0.9, dry
    assert all(0.1 < m < 3.0 for m in medians), medians
    assert min(below5) > 0.8
    assert max(maxima) >= 30.0, "convective cores of 30+ mm/h should occur"
    assert max(maxima) <= 200.0


def test_lightning_only_in_intense_growing_cores() -> None:
    """Flashes only in heavy rain inside the core region of cells that are intense and in the
    first 60 % of their life (growing / mature); silent when no cell qualifies."""
    import math

    from nowcast.sources.synthetic import _R_EDGE

    r = SyntheticRadar(seed=3)
    total = 0.0
    for t in pd.date_range(T, periods=12, freq="20min"):
        ds = r.frame(t)
        flashes = ds[dims.LIGHTNING].values
        rain = ds[dims.RAIN_RATE].values
        assert flashes.min() >= 0 and np.array_equal(flashes, np.round(flashes))
        assert np.all(rain[flashes > 0] >= r.lightning_min_rain)
        _, activity = r._render_cells(r._seconds(t))
        assert np.all(activity[flashes > 0] > 0)
        secs = r._seconds(t)
        qualifying = [
            c for c in r._cells(secs)
            if (secs - c.birth) / c.life < 0.6
            and _R_EDGE * (c.peak / _R_EDGE) ** (math.sin(math.pi * (secs - c.birth) / c.life) ** 2) > r.lightning_threshold
        ]
        if not qualifying:
            assert flashes.sum() == 0
        total += flashes.sum()
    assert total > 0
    # the same cells without electrical activity (threshold above every core) give no flash at all
    quiet = SyntheticRadar(seed=3, lightning_threshold=1000.0)
    assert sum(quiet.frame(t)[dims.LIGHTNING].values.sum() for t in pd.date_range(T, periods=6, freq="20min")) == 0


def test_custom_grid_and_cadence() -> None:
    g = Grid.regular("EPSG:32632", 500_000.0, 5_100_000.0, 1000.0, 1000.0, 96, 64)  # y ascending
    r = SyntheticRadar(g, seed=1, cadence="10min")
    ds = r.frame("2026-06-01T12:03:00Z")
    assert ds[dims.RAIN_RATE].shape == (64, 96)
    assert dims.crs_of(ds).to_epsg() == 32632
    assert r.slot("2026-06-01T12:03:00Z") == pd.Timestamp("2026-06-01 12:00")
    stacked = r.frames(pd.date_range(T, periods=3, freq="10min"))
    assert stacked[dims.RAIN_RATE].dims == (dims.TIME, dims.Y, dims.X)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="seed"):
        SyntheticRadar(seed=-1)
    with pytest.raises(ValueError, match="cadence"):
        SyntheticRadar(cadence="0min")
