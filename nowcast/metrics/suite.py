"""All scores of one forecasting method, accumulated together from forecast/observation pairs.

:class:`ScoreSuite` bundles the streaming states used by the evaluation harness:

- ``rain``: :class:`ContingencyTable` (lead_time, threshold) on rain rate (mm/h);
- ``fss``: :class:`FractionsSkillScore` (lead_time, threshold, scale) on rain rate;
- ``errors``: :class:`ErrorSums` (lead_time,) on rain rate (mm/h);
- ``lightning`` (optional): :class:`ContingencyTable` with one threshold: forecast
  probability >= ``probability_threshold`` vs observed flashes >= ``occurrence``;
- ``reliability`` (optional): :class:`BrierReliability` of the lightning probability.

The state classes are looked up in the metrics registry (:data:`nowcast.metrics.METRICS`,
by the names in :data:`SUITE_METRICS`), which is also where a saved suite's states are
resolved from; third-party metrics register there by name or through entry points of group
``nowcast.metrics``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import xarray as xr

from nowcast import dims
from nowcast.metrics.base import METRICS
from nowcast.metrics.categorical import ContingencyTable
from nowcast.metrics.continuous import ErrorSums
from nowcast.metrics.fss import FractionsSkillScore
from nowcast.metrics.probabilistic import BrierReliability

#: suite state -> name of its metric in the registry (METRICS)
SUITE_METRICS: dict[str, str] = {
    "rain": "categorical",
    "fss": "fss",
    "errors": "continuous",
    "lightning": "categorical",
    "reliability": "reliability",
}


def _metric(state: str) -> Any:
    """The registered metric class of a suite state (``UnknownNameError`` lists the valid ones)."""
    return METRICS.get(SUITE_METRICS[state])


@dataclass(eq=False)
class ScoreSuite:
    """Streaming states of every score for one method; ``lightning``/``reliability`` may be None."""

    rain: ContingencyTable
    fss: FractionsSkillScore
    errors: ErrorSums
    lightning: ContingencyTable | None = None
    reliability: BrierReliability | None = None

    @classmethod
    def init(
        cls,
        *,
        n_leads: int,
        thresholds: Sequence[float],
        fss_thresholds: Sequence[float],
        fss_scales: Sequence[int],
        lightning: bool = False,
        occurrence: float = 1.0,
        probability_threshold: float = 0.5,
        n_bins: int = 10,
    ) -> Self:
        return cls(
            rain=_metric("rain").init(thresholds, n_leads),
            fss=_metric("fss").init(fss_thresholds, fss_scales, n_leads),
            errors=_metric("errors").init(n_leads),
            lightning=_metric("lightning").init([occurrence], n_leads, [probability_threshold])
            if lightning
            else None,
            reliability=_metric("reliability").init(n_leads, occurrence, n_bins) if lightning else None,
        )

    def _states(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SUITE_METRICS}

    def accumulate(self, forecast: xr.Dataset, observed: xr.Dataset) -> None:
        """Add one forecast Dataset (lead_time, y, x) and the observations at its valid times.

        ``observed`` holds ``rain_rate`` (and ``lightning``) with the same shape, first dim
        ordered like ``forecast.lead_time``; NaN observations are masked, never "dry".
        """
        f_rain = np.asarray(forecast[dims.RAIN_RATE].values)
        o_rain = np.asarray(observed[dims.RAIN_RATE].values)
        self.rain.accumulate(f_rain, o_rain)
        self.fss.accumulate(f_rain, o_rain)
        self.errors.accumulate(f_rain, o_rain)
        if self.lightning is not None and self.reliability is not None:
            if dims.LIGHTNING_PROBABILITY not in forecast or dims.LIGHTNING not in observed:
                return
            p = np.asarray(forecast[dims.LIGHTNING_PROBABILITY].values)
            o = np.asarray(observed[dims.LIGHTNING].values)
            self.lightning.accumulate(p, o)
            self.reliability.accumulate(p, o)

    def merge(self, other: Self) -> None:
        for name, state in self._states().items():
            o = getattr(other, name)
            if (state is None) != (o is None):
                raise ValueError(f"cannot merge score suites: {name!r} present in only one")
            if state is not None:
                state.merge(o)

    def compute(self) -> dict[str, np.ndarray]:
        """All scores: rain categorical (lead, threshold), ``fss`` (lead, threshold, scale),
        ``mae``/``rmse``/``me`` (lead,), lightning ``lightning_<score>`` (lead,), ``brier``,
        ``bss`` (lead,), ``reliability_*`` (lead, bin)."""
        out: dict[str, np.ndarray] = {}
        out.update(self.rain.compute())
        out.update(self.fss.compute())
        out.update(self.errors.compute())
        if self.lightning is not None:
            for k, v in self.lightning.compute().items():
                out[f"lightning_{k}"] = v[:, 0]
        if self.reliability is not None:
            out.update(self.reliability.compute())
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if v is None else v.to_dict()) for k, v in self._states().items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        kw = {k: (None if v is None else _from_dict(k, v)) for k, v in data.items()}
        return cls(**kw)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScoreSuite):
            return NotImplemented
        return all(
            a == b for a, b in zip(self._states().values(), other._states().values(), strict=True)
        )

    def diff(self, other: ScoreSuite) -> list[str]:
        """Names of the states/fields that differ from ``other`` (empty when identical)."""
        out: list[str] = []
        for name, a in self._states().items():
            b = getattr(other, name)
            if (a is None) != (b is None):
                out.append(name)
            elif a is not None and a != b:
                da, db = a.to_dict(), b.to_dict()
                out.extend(f"{name}.{k}" for k in da if da[k] != db.get(k))
        return out


def _from_dict(state: str, data: dict[str, Any]) -> Any:
    """A saved state, rebuilt by the registered metric of ``state`` (its ``kind`` must match)."""
    metric = _metric(state)
    if data.get("kind") != metric.__name__:
        raise ValueError(f"score suite state {state!r}: saved kind {data.get('kind')!r} is not {metric.__name__!r}")
    return metric.from_dict(data)
