"""The Nowcaster protocol and the model registry.

A nowcaster turns a history of observed frames into a forecast:

- input ``history``: ``xarray.Dataset`` with dims ``(time, y, x)`` holding
  ``rain_rate`` (float32, mm/h, NaN = no coverage) and ``lightning`` (float32, flashes per
  cell per 5 min, NaN = no coverage), the last ``time`` being the forecast's init time;
  CRS as grid mapping (see :mod:`nowcast.dims`).
- output: ``xarray.Dataset`` with dims ``(lead_time, y, x)`` (``lead_time`` timedelta64,
  5..75 min by default) holding ``rain_rate`` (mm/h, float32) and
  ``lightning_probability`` (0..1, float32), coordinate ``init_time`` (scalar) and attrs
  ``model`` (registry name) and ``model_version``.

Cells outside the input's coverage are NaN in the forecast. Tensors never leave a model adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.registry import Registry


@runtime_checkable
class Nowcaster(Protocol):
    """Anything that forecasts rain rate and lightning probability from a history window."""

    name: str
    #: number of past frames (including the init frame) the model needs
    n_inputs: int

    def forecast(self, history: xr.Dataset, leads: Sequence[pd.Timedelta] = dims.DEFAULT_LEADS) -> xr.Dataset:
        """Forecast ``leads`` after the last frame of ``history``; see the module docstring."""
        ...

    @property
    def version(self) -> str:
        """A string identifying the weights/configuration (e.g. checkpoint hash); '' when none."""
        ...


#: name -> factory(**options) -> Nowcaster
MODELS: Registry[Any] = Registry("models")


def create_nowcaster(name: str, **options: Any) -> Nowcaster:
    """Instantiate the registered nowcaster ``name`` with ``options``."""
    import nowcast.models  # noqa: F401  (registers the built-ins)

    return MODELS.get(name)(**options)


def forecast_dataset(
    rain_rate: np.ndarray,
    lightning_probability: np.ndarray,
    history: xr.Dataset,
    leads: Sequence[pd.Timedelta],
    model: str,
    model_version: str = "",
) -> xr.Dataset:
    """Wrap forecast arrays (lead_time, y, x) into the output Dataset of the protocol."""
    lead_values = pd.to_timedelta(list(leads)).values
    coords = {
        dims.LEAD_TIME: lead_values,
        dims.Y: history[dims.Y].values,
        dims.X: history[dims.X].values,
        dims.INIT_TIME: history[dims.TIME].values[-1],
    }
    if dims.GRID_MAPPING in history.coords:
        coords[dims.GRID_MAPPING] = history.coords[dims.GRID_MAPPING]
    ds = xr.Dataset(
        {
            dims.RAIN_RATE: (dims.FORECAST_DIMS, np.asarray(rain_rate, dtype=dims.FLOAT), {"units": dims.RAIN_RATE_UNITS, "grid_mapping": dims.GRID_MAPPING}),
            dims.LIGHTNING_PROBABILITY: (
                dims.FORECAST_DIMS,
                np.asarray(lightning_probability, dtype=dims.FLOAT),
                {"units": dims.PROBABILITY_UNITS, "grid_mapping": dims.GRID_MAPPING},
            ),
        },
        coords=coords,
        attrs={"model": model, "model_version": model_version},
    )
    return ds
