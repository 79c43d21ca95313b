"""The periods of one retrain run (train / validation / held-out evaluation, separated by
embargoes) and the data checks on them (wet fraction, content fingerprint)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nowcast import dims
from training.retrain.config import RetrainConfig, RetrainSkipped

if TYPE_CHECKING:
    from nowcast.store import ObservationStoreLike


@dataclass
class Periods:
    """Time ranges of one run (inclusive; times of forecast init / last input frames)."""

    train: tuple[pd.Timestamp, pd.Timestamp]
    val: tuple[pd.Timestamp, pd.Timestamp]
    eval: tuple[pd.Timestamp, pd.Timestamp]
    embargo: pd.Timedelta
    end: pd.Timestamp

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": [_iso_naive(self.train[0]), _iso_naive(self.train[1])],
            "val": [_iso_naive(self.val[0]), _iso_naive(self.val[1])],
            "eval": [_iso_naive(self.eval[0]), _iso_naive(self.eval[1])],
            "embargo_minutes": self.embargo.total_seconds() / 60,
            "end": _iso_naive(self.end),
        }


def _iso_naive(t: pd.Timestamp) -> str:
    return pd.Timestamp(t).isoformat()


def _model_geometry(cfg: RetrainConfig, cadence: pd.Timedelta) -> tuple[int, int]:
    """(input frames, output steps) of the challenger's windows."""
    n_in, n_out = int(cfg.model.get("n_inputs", 5)), int(cfg.model.get("n_leads", 15))
    if cfg.nowcaster == "convlstm":
        try:
            from nowcast.models.network import ModelConfig

            mc = ModelConfig.model_validate(cfg.model)
            n_in, n_out = int(getattr(mc, "frames_needed", mc.n_inputs)), mc.n_leads
        except Exception:  # validated earlier; keep defaults if the schema moved
            pass
    eval_steps = int(np.ceil(pd.Timedelta(minutes=cfg.evaluation.lead_max_minutes) / cadence))
    return n_in, max(n_out, eval_steps)


def plan_periods(cfg: RetrainConfig, last: pd.Timestamp, cadence: pd.Timedelta, n_in: int, n_out: int) -> Periods:
    """Train / val / evaluation periods ending at ``last`` (see the module docstring).

    Evaluation start times need ``n_out`` verifying frames after them, so the last one is
    ``end - lead_max``. Periods are separated by an embargo of at least ``(n_in + n_out)``
    cadences: no training or validation window overlaps an evaluation window.
    """
    w = cfg.window
    end = pd.Timestamp(w.end) if w.end else pd.Timestamp(last)
    end = end.floor(cadence)
    embargo = pd.Timedelta(minutes=w.embargo_minutes) if w.embargo_minutes is not None else (n_in + n_out) * cadence
    lead_max = pd.Timedelta(minutes=cfg.evaluation.lead_max_minutes)
    eval_end = (end - lead_max).floor(cadence)
    eval_start = (end - pd.Timedelta(hours=w.eval_hours)).ceil(cadence) + (n_in - 1) * cadence
    if eval_start > eval_end:
        raise RetrainSkipped(f"evaluation period of {w.eval_hours} h is too short for {n_in} inputs and leads up to {lead_max}")
    val_end = (eval_start - embargo).floor(cadence)
    val_start = (val_end - pd.Timedelta(hours=w.val_hours)).ceil(cadence) + cadence
    train_end = (val_start - embargo).floor(cadence)
    train_start = (train_end - pd.Timedelta(hours=w.train_hours)).ceil(cadence) + cadence
    return Periods((train_start, train_end), (val_start, val_end), (eval_start, eval_end), embargo, end)


def _times_in(times: pd.DatetimeIndex, period: tuple[pd.Timestamp, pd.Timestamp]) -> pd.DatetimeIndex:
    return times[(times >= period[0]) & (times <= period[1])]


def data_summary(store: ObservationStoreLike, times: pd.DatetimeIndex, wet_threshold: float, batch: int = 48) -> dict[str, Any]:
    """Wet fraction over ``times`` (covered cells >= wet_threshold) and a fingerprint of the frames.

    The fingerprint is the sha256 of the store URL, the frame times and each frame's bytes
    (rain rate float32), so two versions trained on different frames always differ.
    """
    h = hashlib.sha256(str(store.url).encode())
    wet = covered = 0
    for i in range(0, len(times), batch):
        part = times[i : i + batch]
        ds = store.read_times(part)
        rain = np.asarray(ds[dims.RAIN_RATE].values, dtype=np.float32)
        cov = np.isfinite(rain)
        covered += int(cov.sum())
        wet += int(np.count_nonzero(rain[cov] >= wet_threshold))
        for t, frame in zip(part, rain, strict=True):
            h.update(str(pd.Timestamp(t)).encode())
            h.update(np.ascontiguousarray(frame).tobytes())
    return {
        "n_frames": len(times),
        "first": _iso_naive(times[0]) if len(times) else None,
        "last": _iso_naive(times[-1]) if len(times) else None,
        "wet_fraction": wet / covered if covered else 0.0,
        "sha256": h.hexdigest(),
    }


__all__ = ["Periods", "data_summary", "plan_periods"]
