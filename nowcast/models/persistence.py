"""Eulerian persistence: the last observed frame, unchanged, for every lead time.

Lightning probability: the last frame's (dilated) lightning occurrence, not moved, smoothed
with a lead-dependent Gaussian (see :mod:`nowcast.models.motion`). Cells outside the last
frame's coverage are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.models import motion
from nowcast.models.base import forecast_dataset


class Persistence:
    """Eulerian persistence nowcaster (registry name ``persistence``)."""

    name = "persistence"
    n_inputs = 1

    def __init__(self, lightning_radius: int = 2, lightning_sigma0: float = 1.0, lightning_growth: float = 0.5) -> None:
        self.lightning_radius = int(lightning_radius)
        self.lightning_sigma0 = float(lightning_sigma0)
        self.lightning_growth = float(lightning_growth)

    @property
    def version(self) -> str:
        return f"r{self.lightning_radius}-s{self.lightning_sigma0:g}-g{self.lightning_growth:g}"

    def forecast(self, history: xr.Dataset, leads: Sequence[pd.Timedelta] = dims.DEFAULT_LEADS) -> xr.Dataset:
        """Repeat the last frame of ``history`` (time, y, x) for each lead; see the module docstring."""
        rain, light = motion.history_arrays(history, self.n_inputs, self.name)
        steps = motion.lead_steps(leads, motion.cadence_of(history))
        fc = np.repeat(motion.fill(rain[-1])[None], len(steps), axis=0)
        occ = motion.lightning_occurrence(light[-1], self.lightning_radius)
        prob = motion.smooth_probability(np.repeat(occ[None], len(steps), axis=0), steps, self.lightning_sigma0, self.lightning_growth)
        fc, prob = motion.mask_outputs(fc, prob, rain[-1], light[-1])
        return forecast_dataset(fc, prob, history, leads, self.name, self.version)
