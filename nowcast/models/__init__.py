"""Nowcasting models: the protocol, the registry and the built-in methods.

Built-ins: ``persistence`` (Eulerian), ``extrapolation`` (optical flow + semi-Lagrangian
advection), ``sprog`` (pysteps S-PROG) and ``convlstm`` (a trained encoder-forecaster; torch is
imported only when one is created); ``median-ensemble`` combines several of them (the pointwise
median of their rain fields: a majority vote at every threshold).
"""

from typing import Any

from nowcast.models.base import MODELS, Nowcaster, create_nowcaster, forecast_dataset
from nowcast.models.ensemble import median_ensemble
from nowcast.models.extrapolation import Extrapolation
from nowcast.models.persistence import Persistence
from nowcast.models.sprog import SProg


def _convlstm(**options: Any) -> Nowcaster:
    """Factory of the ``convlstm`` nowcaster (imports torch lazily)."""
    from nowcast.models.convlstm import ConvLSTMNowcaster

    return ConvLSTMNowcaster(**options)


MODELS.register("persistence", Persistence)
MODELS.register("extrapolation", Extrapolation)
MODELS.register("sprog", SProg)
MODELS.register("convlstm", _convlstm)
MODELS.register("median-ensemble", median_ensemble)

__all__ = ["MODELS", "Nowcaster", "create_nowcaster", "forecast_dataset"]
