"""The forecast-and-score kernel: run a nowcaster from start times of a store, pool contingency tables.

Used by the event-level DAP runner (:mod:`training.dap.events`), retraining's held-out
comparison (:mod:`training.retrain.decision`, one table per start time through
:func:`score_case`) and the real-data skill benchmarks. Leads are counted in *steps of the store's cadence* (1..n_leads); the lead time in
minutes of step k is ``k * cadence``, so events of different cadences are pooled by lead time
(:func:`pool_by_minutes`), never by step. Targets past the end of the stored record, and cells
without coverage, are NaN and masked out, never counted as dry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.metrics import ContingencyTable

if TYPE_CHECKING:
    from nowcast.store import ObservationStoreLike

log = logging.getLogger(__name__)

COUNTS = ("hits", "misses", "false_alarms", "correct_negatives")


def start_times(store: ObservationStoreLike, n_inputs: int, stride: int = 1, periods: Sequence[tuple[object, object]] | None = None) -> pd.DatetimeIndex:
    """Stored times (optionally within ``periods``) whose ``n_inputs`` input frames are all stored
    and whose first target is stored, at every ``stride``-th position of the stored record
    (the positions training windows use with ``window_stride``, so their guides are shared)."""
    stored = store.times()
    have = set(stored)
    cad = store.cadence
    bounds = None if periods is None else [(dims.to_utc_timestamp(a), dims.to_utc_timestamp(b)) for a, b in periods]
    keep = []
    for i, t in enumerate(stored):
        if i % max(1, int(stride)):
            continue
        if bounds is not None and not any(a <= t <= b for a, b in bounds):
            continue
        if all((t - cad * k) in have for k in range(n_inputs)) and (t + cad) in have:
            keep.append(t)
    return pd.DatetimeIndex(keep)


def score_starts(
    model: Any,
    store: ObservationStoreLike,
    times: Iterable[pd.Timestamp],
    thresholds: Sequence[float],
    n_leads: int,
    progress: Any = None,
) -> tuple[ContingencyTable, float]:
    """Forecast ``n_leads`` steps from every start time and pool a contingency table.

    ``model``: a nowcaster (``forecast(history, leads)``, ``n_inputs``); ``store``: an
    observation store. Returns ``(table (n_leads, thresholds), seconds spent forecasting)``.
    """
    cad = store.cadence
    leads = [cad * k for k in range(1, n_leads + 1)]
    table = ContingencyTable.init(thresholds, n_leads)
    seconds = 0.0
    for t in times:
        history = store.window(t, model.n_inputs)
        observed = store.window(t + cad * n_leads, n_leads)[dims.RAIN_RATE].values
        seconds += score_case(model, history, leads, observed, table)
        if progress is not None:
            progress.update(1)
    return table, seconds


def score_case(
    model: Any,
    history: xr.Dataset,
    leads: Sequence[pd.Timedelta],
    observed: np.ndarray,
    table: ContingencyTable,
    keep: np.ndarray | None = None,
) -> float:
    """Forecast ``leads`` from ``history`` (one start time) and accumulate it into ``table``.

    ``history``: the model's input frames (time, y, x); ``observed``: rain rate in mm/h
    (n_kept_leads, y, x), NaN where not covered; ``keep``: bool (len(leads),) selecting the
    leads that are scored (default all), so ``table`` has ``keep.sum()`` leads. Returns the
    seconds spent forecasting.
    """
    t0 = time.perf_counter()
    fc = model.forecast(history, list(leads))[dims.RAIN_RATE].values
    seconds = time.perf_counter() - t0
    if keep is not None:
        fc = np.asarray(fc)[keep]
    table.accumulate(fc, observed)
    return seconds


def tables_dataset(tables: dict[tuple[str, str], ContingencyTable], cadence_minutes: dict[str, float]) -> xr.Dataset:
    """Counts of many (method, event) tables as one labelled dataset.

    ``tables``: (method, event) -> table with the same thresholds and leads. Returns
    ``xr.Dataset`` with int64 variables ``hits, misses, false_alarms, correct_negatives``
    (method, event, step, threshold) and the coordinate ``lead_minutes`` (event, step).
    Missing (method, event) pairs are -1 (not scored).
    """
    methods = sorted({m for m, _ in tables})
    events = sorted({e for _, e in tables})
    any_t = next(iter(tables.values()))
    n_leads, thr = any_t.n_leads, list(any_t.thresholds)
    data = {c: np.full((len(methods), len(events), n_leads, len(thr)), -1, dtype=np.int64) for c in COUNTS}
    for (m, e), t in tables.items():
        for c in COUNTS:
            data[c][methods.index(m), events.index(e)] = getattr(t, c)
    steps = np.arange(1, n_leads + 1)
    minutes = np.array([[cadence_minutes[e] * s for s in steps] for e in events], dtype=np.float64)
    return xr.Dataset(
        {c: (("method", "event", "step", "threshold"), v) for c, v in data.items()},
        coords={"method": methods, "event": events, "step": steps, "threshold": thr, "lead_minutes": (("event", "step"), minutes)},
        attrs={"threshold_units": "mm h-1", "note": "counts of cells; -1 = not scored"},
    )


def pool_by_minutes(counts: xr.Dataset, minutes: Sequence[float], events: Sequence[str] | None = None) -> xr.Dataset:
    """Sum counts over ``events`` (default all) at each lead time in ``minutes``.

    An event contributes to lead ``m`` only when one of its steps is ``m`` minutes. Returns
    counts (method, lead_time, threshold) float64 with ``lead_time`` in minutes.
    """
    sel = counts if events is None else counts.sel(event=list(events))
    out = {c: np.zeros((sel.sizes["method"], len(minutes), sel.sizes["threshold"])) for c in COUNTS}
    for ei in range(sel.sizes["event"]):
        lm = sel["lead_minutes"].values[ei]
        for li, m in enumerate(minutes):
            hit = np.flatnonzero(np.isclose(lm, m))
            if not len(hit):
                continue
            for c in COUNTS:
                v = sel[c].values[:, ei, hit[0], :].astype(np.float64)
                out[c][:, li, :] += np.where(v >= 0, v, 0.0)
    return xr.Dataset(
        {c: (("method", "lead_time", "threshold"), v) for c, v in out.items()},
        coords={"method": sel["method"].values, "lead_time": np.asarray(minutes, dtype=float), "threshold": sel["threshold"].values},
    )


def scores(pooled: xr.Dataset) -> xr.Dataset:
    """CSI, POD, FAR, BIAS, HSS, ETS, MCC from pooled counts, same dims."""
    from nowcast.metrics.categorical import scores_from_counts

    s = scores_from_counts(*(pooled[c].values for c in COUNTS))
    return xr.Dataset({k: (pooled["hits"].dims, v) for k, v in s.items()}, coords=pooled.coords)
