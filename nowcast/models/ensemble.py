"""Median ensemble: the pointwise median of several nowcasters' rain fields.

For an odd number of members, ``median >= t`` exactly where a majority of the members forecast
``>= t``, for every threshold ``t`` at once: the ensemble's rain field is the majority vote of
the members' threshold areas, with no tuning of its own. Lightning probability is the members'
mean. Typical members: ConvLSTM checkpoints trained on different data or seeds (the repeated
event DAP's models of one held-out event, :mod:`training.dap.ensemble`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.models.base import Nowcaster, create_nowcaster, forecast_dataset
from nowcast.models.motion import ForecastInputError


class MedianEnsemble:
    """Pointwise median (rain rate, mm/h) and mean (lightning probability) of ``members``.

    ``members``: nowcasters; each forecasts (lead_time, y, x) on the history's grid from the
    history's last frames, so the ensemble needs the most input frames any member needs. Cells
    any member leaves NaN (no coverage) stay NaN.
    """

    name = "median-ensemble"

    def __init__(self, members: Sequence[Nowcaster]) -> None:
        if not members:
            raise ValueError("median-ensemble: no members")
        self.members = list(members)
        self.n_inputs = max(m.n_inputs for m in self.members)
        self._version = hashlib.sha256("|".join(f"{m.name}:{m.version}" for m in self.members).encode()).hexdigest()[:16]

    @property
    def version(self) -> str:
        return self._version

    def forecast(self, history: xr.Dataset, leads: Sequence[pd.Timedelta] = dims.DEFAULT_LEADS) -> xr.Dataset:
        """Median of the members' forecasts of ``leads`` from ``history`` (time, y, x)."""
        if history.sizes.get(dims.TIME, 0) < self.n_inputs:
            raise ForecastInputError(f"{self.name}: needs {self.n_inputs} input frames, got {history.sizes.get(dims.TIME, 0)}")
        outs = [m.forecast(history, leads) for m in self.members]
        rain = np.stack([o[dims.RAIN_RATE].values for o in outs])  # (member, lead_time, y, x) mm/h
        prob = np.stack([o[dims.LIGHTNING_PROBABILITY].values for o in outs])
        with np.errstate(invalid="ignore"):
            rate = np.median(rain, axis=0)  # NaN anywhere -> NaN: no coverage stays uncovered
            light = prob.mean(axis=0)
        return forecast_dataset(rate, light, history, leads, self.name, self.version)


def median_ensemble(members: Sequence[Nowcaster] = (), checkpoints: Sequence[str | Path] = (), model: str = "convlstm", **options: Any) -> MedianEnsemble:
    """Registry factory: the given ``members``, plus one ``model`` per checkpoint (``options``
    passed to each, e.g. ``device``, ``guide_cache``)."""
    built = list(members) + [create_nowcaster(model, checkpoint=c, **options) for c in checkpoints]
    return MedianEnsemble(built)
