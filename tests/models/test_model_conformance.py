"""One conformance suite run over every registered nowcaster."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import nowcast.models  # noqa: F401  (registers the built-ins)
from nowcast import dims
from nowcast.models import MODELS, Nowcaster, create_nowcaster
from nowcast.models.motion import ForecastInputError

NAMES = MODELS.names()
#: models whose forecast of a spatially constant field is that same constant
EXACT_ON_CONSTANT = {"persistence", "extrapolation", "sprog"}


@pytest.fixture(params=NAMES)
def model(request: pytest.FixtureRequest, convlstm_checkpoint) -> Nowcaster:  # noqa: ANN001
    options = {"checkpoint": convlstm_checkpoint} if request.param == "convlstm" else {}
    if request.param == "median-ensemble":  # members that need different numbers of input frames
        options = {"members": [create_nowcaster("persistence"), create_nowcaster("extrapolation")], "checkpoints": [convlstm_checkpoint]}
    return create_nowcaster(request.param, **options)


def test_all_builtins_registered() -> None:
    assert {"persistence", "extrapolation", "sprog", "convlstm", "median-ensemble"} <= set(NAMES)


def test_output_contract(model: Nowcaster, blob_history) -> None:  # noqa: ANN001
    assert isinstance(model, Nowcaster)
    fc = model.forecast(blob_history)
    assert set(fc.data_vars) == {dims.RAIN_RATE, dims.LIGHTNING_PROBABILITY}
    for var in fc.data_vars.values():
        assert var.dims == dims.FORECAST_DIMS
        assert var.dtype == np.float32
        assert var.shape == (15, 64, 64)
    assert fc[dims.RAIN_RATE].attrs["units"] == dims.RAIN_RATE_UNITS
    assert fc[dims.LIGHTNING_PROBABILITY].attrs["units"] == dims.PROBABILITY_UNITS
    leads = pd.to_timedelta(fc[dims.LEAD_TIME].values)
    assert list(leads) == [pd.Timedelta(minutes=m) for m in range(5, 80, 5)]
    assert pd.Timestamp(fc[dims.INIT_TIME].values) == pd.Timestamp(blob_history[dims.TIME].values[-1])
    np.testing.assert_array_equal(fc[dims.X].values, blob_history[dims.X].values)
    assert fc.attrs["model"] == model.name
    assert isinstance(model.version, str) and fc.attrs["model_version"] == model.version
    assert dims.crs_of(fc).equals(dims.crs_of(blob_history))


def test_nan_outside_coverage(model: Nowcaster, blob_history) -> None:  # noqa: ANN001
    fc = model.forecast(blob_history)
    no_cov = ~np.isfinite(blob_history[dims.RAIN_RATE].values[-1])
    for name in (dims.RAIN_RATE, dims.LIGHTNING_PROBABILITY):
        v = fc[name].values
        assert np.isnan(v[:, no_cov]).all(), name
        assert np.isfinite(v[:, ~no_cov]).all(), name
    rr = fc[dims.RAIN_RATE].values[:, ~no_cov]
    p = fc[dims.LIGHTNING_PROBABILITY].values[:, ~no_cov]
    assert rr.min() >= 0
    assert p.min() >= 0 and p.max() <= 1


def test_unknown_lightning_gives_nan_probability(model: Nowcaster, blob_history) -> None:  # noqa: ANN001
    h = blob_history.copy(deep=True)
    h[dims.LIGHTNING][:] = np.nan
    fc = model.forecast(h)
    assert np.isnan(fc[dims.LIGHTNING_PROBABILITY].values).all()
    assert np.isfinite(fc[dims.RAIN_RATE].values[:, 20:, 20:]).all()


def test_no_rain_forecasts_no_rain(model: Nowcaster, history_factory) -> None:  # noqa: ANN001
    h = history_factory(np.zeros((6, 64, 64), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no division by zero etc. on empty fields
        fc = model.forecast(h)
    assert np.all(fc[dims.RAIN_RATE].values == 0)
    p = fc[dims.LIGHTNING_PROBABILITY].values
    assert np.isfinite(p).all() and p.min() >= 0 and p.max() <= 1


def test_constant_field(model: Nowcaster, history_factory) -> None:  # noqa: ANN001
    h = history_factory(np.full((6, 64, 64), 3.0, np.float32))
    fc = model.forecast(h)
    rr = fc[dims.RAIN_RATE].values
    assert np.isfinite(rr).all() and rr.min() >= 0
    if model.name in EXACT_ON_CONSTANT:
        np.testing.assert_allclose(rr, 3.0, rtol=1e-4)


def test_selected_leads(model: Nowcaster, blob_history) -> None:  # noqa: ANN001
    leads = [pd.Timedelta(minutes=10), pd.Timedelta(minutes=30)]
    fc = model.forecast(blob_history, leads)
    assert list(pd.to_timedelta(fc[dims.LEAD_TIME].values)) == leads
    full = model.forecast(blob_history)
    np.testing.assert_allclose(fc[dims.RAIN_RATE].values, full[dims.RAIN_RATE].sel(lead_time=leads).values, rtol=1e-5, atol=1e-5)


def test_too_short_history_is_refused(model: Nowcaster, blob_history) -> None:  # noqa: ANN001
    short = blob_history.isel(time=slice(-1, None)) if model.n_inputs > 1 else blob_history.isel(time=slice(0, 0))
    with pytest.raises(ForecastInputError, match=str(model.name)):
        model.forecast(short)


def test_bad_leads_are_refused(model: Nowcaster, blob_history) -> None:  # noqa: ANN001
    with pytest.raises(ForecastInputError):
        model.forecast(blob_history, [pd.Timedelta(minutes=-5)])


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="persistence"):
        create_nowcaster("nope")
