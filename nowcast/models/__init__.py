"""Nowcasting models: the protocol, the registry and the built-in methods."""

from nowcast.models.base import MODELS, Nowcaster, create_nowcaster, forecast_dataset

__all__ = ["MODELS", "Nowcaster", "create_nowcaster", "forecast_dataset"]
