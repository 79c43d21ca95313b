"""One motion trajectory shared by every advected field: the ConvLSTM's guides (LK extrapolation,
S-PROG, lightning) integrate the motion once and must equal pysteps' own extrapolation and
S-PROG exactly (the network was trained on pysteps' S-PROG)."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast.models import motion
from nowcast.models.sprog import _CdfMatcher, sprog_along, sprog_rain, to_dbr
from tests.models.model_data import blob_frames


def _textured(n: int, seed: int, u: float = 1.3, v: float = -0.7) -> np.ndarray:
    """Blobs with small-scale texture moving out of the domain (so edges matter); (n, 64, 80) mm/h."""
    frames = blob_frames(n, ny=64, nx=80, u=u, v=v, x0=50.0, y0=30.0)
    texture = np.random.default_rng(seed).gamma(2.0, 0.5, size=frames.shape[1:])
    return (frames * texture).astype(np.float32)


def _velocity(rain: np.ndarray) -> np.ndarray:
    v = motion.estimate_motion(rain)
    assert np.any(v), "the test needs a non-zero motion field"
    # a rotating part, so the trajectory is curved and interpolating the motion matters
    ny, nx = v.shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx]
    v = v + np.stack([0.02 * (yy - ny / 2), -0.02 * (xx - nx / 2)]).astype(v.dtype)
    return v


@pytest.mark.parametrize("seed", [0, 1])
def test_advect_along_a_trajectory_equals_pysteps_extrapolation(seed: int) -> None:
    from pysteps.extrapolation import semilagrangian

    rain = _textured(3, seed)
    v = _velocity(rain)
    path = motion.trajectory(v, 12)
    assert path.shape == (12, 2) + rain.shape[1:]
    steps = np.array([1.0, 2.0, 5.0, 12.0])
    shared = motion.advect(rain[-1], v, steps, path=path)
    np.testing.assert_array_equal(shared, motion.advect(rain[-1], v, steps))
    reference = semilagrangian.extrapolate(rain[-1].astype(np.float64), v.astype(np.float64), 12, outval=0.0)
    np.testing.assert_array_equal(shared, np.asarray(reference, dtype=np.float32)[steps.astype(int) - 1])
    # a path shorter than the leads is not used (falls back to integrating)
    np.testing.assert_array_equal(motion.advect(rain[-1], v, steps, path=path[:3]), shared)


@pytest.mark.parametrize(("ar_order", "probmatching"), [(2, "cdf"), (1, "cdf"), (2, "mean"), (2, None)])
def test_sprog_along_a_trajectory_equals_pysteps_sprog(ar_order: int, probmatching: str | None) -> None:
    from pysteps.nowcasts import sprog

    rain = _textured(ar_order + 1, seed=3)
    v = _velocity(rain)
    dbr = to_dbr(rain)
    thr = 10.0 * np.log10(0.1)
    with motion.quiet_pysteps():
        reference = sprog.forecast(dbr, v.astype(np.float64), 9, precip_thr=thr, n_cascade_levels=5, ar_order=ar_order,
                                   probmatching_method=probmatching, extrap_kwargs={"allow_nonfinite_values": True})
    shared = sprog_along(dbr, motion.trajectory(v, 9), thr, n_cascade_levels=5, ar_order=ar_order, probmatching_method=probmatching)
    np.testing.assert_array_equal(np.isnan(shared), np.isnan(reference))
    np.testing.assert_array_equal(shared, reference)


def test_sprog_rain_with_a_path_is_the_pysteps_nowcast() -> None:
    rain = _textured(3, seed=5)
    v = _velocity(rain)
    steps = np.arange(1, 8, dtype=np.float64)
    fallback = motion.advect(rain[-1], v, steps)
    plain = sprog_rain(rain, v, steps, fallback)
    assert not np.allclose(plain, fallback)  # S-PROG ran (not the fallback)
    np.testing.assert_array_equal(sprog_rain(rain, v, steps, fallback, path=motion.trajectory(v, 7)), plain)
    # a subset of leads picks from the same run
    np.testing.assert_array_equal(sprog_rain(rain, v, steps[[1, 4]], fallback[[1, 4]], path=motion.trajectory(v, 7)), plain[[1, 4]])


@pytest.mark.parametrize("wetter_target", [True, False])
def test_cdf_matcher_equals_pysteps_empirical_cdf_matching(wetter_target: bool) -> None:
    from pysteps.postprocessing.probmatching import nonparam_match_empirical_cdf

    rng = np.random.default_rng(7)
    target = np.where(rng.random((40, 50)) < (0.6 if wetter_target else 0.2), rng.gamma(2.0, 3.0, (40, 50)), -15.0)
    target[3, 4] = np.nan
    field = np.where(rng.random((40, 50)) < 0.4, rng.normal(2.0, 4.0, (40, 50)), -15.0)
    matcher = _CdfMatcher(target)
    for f in (field, field + 1.0, np.where(field > 5.0, field, -15.0)):
        np.testing.assert_array_equal(matcher(f), nonparam_match_empirical_cdf(f, target))


def test_sprog_nowcaster_sharing_its_trajectory_gives_the_same_forecast() -> None:
    import pandas as pd

    from nowcast import dims
    from nowcast.models import create_nowcaster
    from tests.models.model_data import make_history

    rain = _textured(4, seed=9)
    light = np.zeros_like(rain)
    light[-1, 30:33, 40:43] = 2.0
    hist = make_history(rain, light)
    leads = [pd.Timedelta(minutes=5 * k) for k in (1, 3, 6)]
    reference = create_nowcaster("sprog").forecast(hist, leads)
    shared = create_nowcaster("sprog", share_trajectory=True).forecast(hist, leads)
    for var in (dims.RAIN_RATE, dims.LIGHTNING_PROBABILITY):
        np.testing.assert_array_equal(shared[var].values, reference[var].values)
    assert float(reference[dims.RAIN_RATE].sum()) > 0 and float(reference[dims.LIGHTNING_PROBABILITY].sum()) > 0
