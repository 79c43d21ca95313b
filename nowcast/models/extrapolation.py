"""Lagrangian persistence: optical flow (pysteps, Lucas-Kanade by default) on the last
frames, then semi-Lagrangian advection of the last frame.

Options: ``n_inputs`` (frames used for the motion, >= 2), ``oflow`` (a
``pysteps.motion.get_method`` name: "LK", "DARTS", "VET", "proesmans"), ``oflow_kwargs``,
and the lightning-baseline parameters of :mod:`nowcast.models.motion` (NaN and no-rain rules
documented there).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.models import motion
from nowcast.models.base import forecast_dataset


class Extrapolation:
    """Optical-flow extrapolation nowcaster (registry name ``extrapolation``)."""

    name = "extrapolation"

    def __init__(
        self,
        n_inputs: int = 3,
        oflow: str = "LK",
        oflow_kwargs: dict | None = None,
        lightning_radius: int = 2,
        lightning_sigma0: float = 1.0,
        lightning_growth: float = 0.5,
    ) -> None:
        if int(n_inputs) < 2:
            raise ValueError(f"extrapolation: n_inputs must be >= 2 for the optical flow, got {n_inputs}")
        from pysteps import motion as pmotion

        pmotion.get_method(oflow)  # fail early, naming the bad method
        self.n_inputs = int(n_inputs)
        self.oflow = oflow
        self.oflow_kwargs = dict(oflow_kwargs or {})
        self.lightning = {"lightning_radius": int(lightning_radius), "lightning_sigma0": float(lightning_sigma0), "lightning_growth": float(lightning_growth)}

    @property
    def version(self) -> str:
        return f"{self.oflow}-n{self.n_inputs}"

    def forecast(self, history: xr.Dataset, leads: Sequence[pd.Timedelta] = dims.DEFAULT_LEADS) -> xr.Dataset:
        """Advect the last frame of ``history`` (time, y, x) to each lead."""
        rain, light = motion.history_arrays(history, self.n_inputs, self.name)
        steps = motion.lead_steps(leads, motion.cadence_of(history))
        fc, prob, _, _ = motion.extrapolation_nowcast(rain, light, steps, oflow=self.oflow, oflow_kwargs=self.oflow_kwargs, **self.lightning)
        fc, prob = motion.mask_outputs(fc, prob, rain[-1], light[-1])
        return forecast_dataset(fc, prob, history, leads, self.name, self.version)
