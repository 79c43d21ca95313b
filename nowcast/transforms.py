"""Unit conversions between reflectivity, rain rate and accumulations; each with its inverse beside it.

All functions are elementwise on numpy arrays or xarray objects and keep NaN (no coverage)
as NaN. Rain rates are in mm/h, reflectivity in dBZ, accumulations in mm.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pandas as pd

from nowcast.dims import MARSHALL_PALMER, ZRRelation

A = TypeVar("A")  # numpy array or xarray object

#: Reflectivity below which the rain rate is set to 0 (observed dry); ~0.04 mm/h for MP.
DEFAULT_DRY_DBZ = 0.0


def dbz_to_rainrate(dbz: A, zr: ZRRelation = MARSHALL_PALMER, dry_dbz: float | None = None) -> A:
    """Reflectivity (dBZ) -> rain rate (mm/h) with R = (10**(dBZ/10) / a) ** (1/b).

    Values below ``dry_dbz`` (when given) become 0 mm/h; NaN stays NaN.
    """
    z = 10.0 ** (dbz / 10.0)  # type: ignore[operator]
    r = (z / zr.a) ** (1.0 / zr.b)
    if dry_dbz is not None:
        r = _where(dbz < dry_dbz, 0.0, r)  # type: ignore[operator]
    return r  # type: ignore[return-value]


def rainrate_to_dbz(rate: A, zr: ZRRelation = MARSHALL_PALMER, floor_dbz: float | None = None) -> A:
    """Rain rate (mm/h) -> reflectivity (dBZ), the inverse of :func:`dbz_to_rainrate`.

    Zero rain gives -inf unless ``floor_dbz`` is given, in which case it is used for R <= 0.
    """
    with np.errstate(divide="ignore"):
        dbz = 10.0 * np.log10(zr.a * rate**zr.b)  # type: ignore[operator]
    if floor_dbz is not None:
        dbz = _where(rate <= 0, floor_dbz, dbz)  # type: ignore[operator]
    return dbz  # type: ignore[return-value]


def accumulation_to_rainrate(acc_mm: A, interval: pd.Timedelta | str) -> A:
    """Accumulation (mm over ``interval``) -> mean rain rate (mm/h)."""
    hours = pd.Timedelta(interval).total_seconds() / 3600.0
    if hours <= 0:
        raise ValueError(f"accumulation interval must be positive, got {interval}")
    return acc_mm / hours  # type: ignore[operator]


def rainrate_to_accumulation(rate: A, interval: pd.Timedelta | str) -> A:
    """Mean rain rate (mm/h) -> accumulation (mm over ``interval``), inverse of the above."""
    hours = pd.Timedelta(interval).total_seconds() / 3600.0
    if hours <= 0:
        raise ValueError(f"accumulation interval must be positive, got {interval}")
    return rate * hours  # type: ignore[operator]


#: Offset used by the log scaling so that 0 mm/h maps to a finite value.
LOG_RATE_OFFSET = 0.1


def rainrate_to_scaled(rate: A, offset: float = LOG_RATE_OFFSET) -> A:
    """Rain rate (mm/h) -> dimensionless log scale log10(R + offset) - log10(offset) >= 0.

    A reflectivity-like value used as the network's regression target (0 = dry).
    """
    return np.log10(rate + offset) - np.log10(offset)  # type: ignore[operator]


def scaled_to_rainrate(scaled: A, offset: float = LOG_RATE_OFFSET) -> A:
    """Inverse of :func:`rainrate_to_scaled`; negative inputs clip to 0 mm/h."""
    r = 10.0 ** (scaled + np.log10(offset)) - offset  # type: ignore[operator]
    return _where(r < 0, 0.0, r)  # type: ignore[return-value]


def _where(cond, a, b):  # noqa: ANN001
    """np.where that keeps xarray objects as xarray objects."""
    if hasattr(b, "where") and not isinstance(b, np.ndarray):
        return b.where(~cond, a)
    return np.where(cond, a, b)
