"""The streaming-metric protocol, its registry and shared helpers.

A metric is a *state object*: ``init`` builds an empty state, ``accumulate(forecast,
observed)`` adds one case, ``merge(other)`` pools two states exactly (integer counts,
float64 sums) and ``compute()`` turns the pooled state into scores. Scores are therefore
always computed from pooled tables and never averaged per case. NaN in either input marks
a missing value (no coverage, no forecast) and is masked out, never counted as "dry".

Array inputs have shape ``(lead_time, y, x)`` (one forecast: all leads of one init time).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from nowcast.registry import Registry


@runtime_checkable
class Metric(Protocol):
    """A streaming score state: accumulate cases, merge states, compute scores."""

    def accumulate(self, forecast: Any, observed: Any) -> None:
        """Add one case: arrays (lead_time, y, x); NaN in either is masked."""
        ...

    def merge(self, other: Self) -> None:
        """Pool ``other`` into this state (exact: counts and float64 sums add)."""
        ...

    def compute(self) -> dict[str, np.ndarray]:
        """Scores from the pooled state: name -> float64 array; NaN where undefined."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (for the ledger and for exact comparison)."""
        ...


#: name -> metric state class (with an ``init`` classmethod)
METRICS: Registry[Any] = Registry("metrics")


def as_cases(
    forecast: Any, observed: Any, n_leads: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forecast/observed as float64 arrays (lead, cells) plus the joint validity mask.

    ``forecast`` and ``observed`` are arrays or DataArrays (lead_time, y, x) with the same
    shape; the mask is True where both are finite.
    """
    f = np.asarray(getattr(forecast, "values", forecast), dtype=np.float64)
    o = np.asarray(getattr(observed, "values", observed), dtype=np.float64)
    if f.shape != o.shape:
        raise ValueError(f"forecast shape {f.shape} differs from observed shape {o.shape}")
    if f.ndim == 2:
        f, o = f[None], o[None]
    if f.ndim != 3 or f.shape[0] != n_leads:
        raise ValueError(f"expected arrays (lead_time={n_leads}, y, x), got shape {f.shape}")
    f = f.reshape(n_leads, -1)
    o = o.reshape(n_leads, -1)
    valid = np.isfinite(f) & np.isfinite(o)
    return f, o, valid


def safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64 with NaN where den == 0 (undefined score, never 0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


class StateMixin:
    """``to_dict`` / ``from_dict`` / equality for dataclass states holding numpy arrays."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": type(self).__name__}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                out[f.name] = {
                    "dtype": str(v.dtype),
                    "shape": list(v.shape),
                    "data": v.ravel().tolist(),
                }
            else:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            v = data[f.name]
            if isinstance(v, dict) and "dtype" in v:
                kwargs[f.name] = np.asarray(v["data"], dtype=v["dtype"]).reshape(v["shape"])
            elif isinstance(v, list):
                kwargs[f.name] = tuple(v)
            else:
                kwargs[f.name] = v
        return cls(**kwargs)

    def _check_compatible(self, other: Any) -> None:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        for f in fields(self):  # type: ignore[arg-type]
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if a.shape != b.shape:
                    raise ValueError(
                        f"cannot merge {type(self).__name__}: {f.name} shape {a.shape} != {b.shape}"
                    )
            elif a != b:
                raise ValueError(f"cannot merge {type(self).__name__}: {f.name} {a!r} != {b!r}")

    def _merge_arrays(self, other: Any) -> None:
        self._check_compatible(other)
        for f in fields(self):  # type: ignore[arg-type]
            a = getattr(self, f.name)
            if isinstance(a, np.ndarray):
                a += getattr(other, f.name)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for f in fields(self):  # type: ignore[arg-type]
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if a.dtype != b.dtype or not np.array_equal(a, b, equal_nan=True):
                    return False
            elif a != b:
                return False
        return True
