"""The median ensemble: a majority vote of its members' threshold areas at every threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nowcast import dims
from nowcast.models import create_nowcaster, forecast_dataset
from nowcast.models.ensemble import MedianEnsemble


class FixedField:
    """A member that forecasts a given (lead_time, y, x) field, whatever the history."""

    name = "fixed"

    def __init__(self, rain: np.ndarray, prob: float, n_inputs: int = 2) -> None:
        self.rain, self.prob, self.n_inputs, self.version = rain, prob, n_inputs, f"v{rain.sum():.3f}"

    def forecast(self, history: xr.Dataset, leads: Sequence[pd.Timedelta] = dims.DEFAULT_LEADS) -> xr.Dataset:
        return forecast_dataset(self.rain[: len(leads)], np.full(self.rain[: len(leads)].shape, self.prob), history, leads, self.name, self.version)


def test_median_is_the_majority_vote_at_every_threshold(blob_history: xr.Dataset) -> None:
    rng = np.random.default_rng(3)
    fields = [rng.gamma(0.6, 3.0, (15, 64, 64)).astype(np.float32) for _ in range(3)]
    fields[1][:, 5, 7] = np.nan  # one member without coverage in one cell
    ens = MedianEnsemble([FixedField(f, p) for f, p in zip(fields, (0.1, 0.2, 0.6), strict=True)])
    fc = ens.forecast(blob_history)
    rain = fc[dims.RAIN_RATE].values
    covered = np.isfinite(np.stack(fields)).all(0)
    assert np.isnan(rain[~covered]).all() and np.isfinite(rain[covered]).all()
    for t in (0.1, 1.0, 5.0, 10.0):
        votes = sum((f >= t).astype(int) for f in fields)
        np.testing.assert_array_equal((rain >= t)[covered], (votes >= 2)[covered])
    np.testing.assert_allclose(fc[dims.LIGHTNING_PROBABILITY].values, 0.3, rtol=1e-6)
    assert fc.attrs["model"] == "median-ensemble" and fc.attrs["model_version"] == ens.version


def test_version_names_the_members_and_history_must_cover_the_longest_member(blob_history: xr.Dataset) -> None:
    a, b = np.zeros((15, 64, 64), np.float32), np.ones((15, 64, 64), np.float32)
    one = MedianEnsemble([FixedField(a, 0.0), FixedField(b, 0.0, n_inputs=5)])
    assert one.n_inputs == 5
    assert one.version != MedianEnsemble([FixedField(a, 0.0), FixedField(a, 0.0, n_inputs=5)]).version
    from nowcast.models.motion import ForecastInputError

    with pytest.raises(ForecastInputError, match="median-ensemble: needs 5 input frames, got 4"):
        one.forecast(blob_history.isel(time=slice(-4, None)))
    with pytest.raises(ValueError, match="no members"):
        create_nowcaster("median-ensemble")
