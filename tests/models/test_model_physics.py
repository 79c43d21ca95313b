"""Physical checks of the optical-flow baselines on a blob translating at constant velocity."""

from __future__ import annotations

import numpy as np
import pandas as pd
from model_data import blob_frames, make_history

from nowcast import dims
from nowcast.models import create_nowcaster
from nowcast.models.motion import estimate_motion


def _csi(f: np.ndarray, o: np.ndarray, thr: float) -> float:
    a = np.sum((f >= thr) & (o >= thr))
    b = np.sum((f >= thr) & (o < thr))
    c = np.sum((f < thr) & (o >= thr))
    return float(a / (a + b + c))


def test_lucas_kanade_recovers_the_velocity() -> None:
    frames = blob_frames(3, ny=96, nx=96, u=2.0, v=-1.0, y0=50)
    v = estimate_motion(frames, "LK")
    wet = frames[-1] > 1.0
    assert abs(np.median(v[0][wet]) - 2.0) < 0.3
    assert abs(np.median(v[1][wet]) + 1.0) < 0.3


def test_extrapolation_advects_a_translating_blob() -> None:
    u, v = 1.5, 1.0
    frames = blob_frames(4 + 12, ny=96, nx=96, u=u, v=v)
    history = make_history(frames[:4])
    future = frames[4:]
    fc = create_nowcaster("extrapolation").forecast(history)
    f30 = fc[dims.RAIN_RATE].sel(lead_time=pd.Timedelta(minutes=30)).values
    o30 = future[5]
    csi_ext = _csi(f30, o30, 1.0)
    pers = create_nowcaster("persistence").forecast(history)[dims.RAIN_RATE].sel(lead_time=pd.Timedelta(minutes=30)).values
    assert csi_ext > 0.85
    assert csi_ext > _csi(pers, o30, 1.0) + 0.3
    # the blob's centre of mass moved by 6 * (u, v) cells
    yy, xx = np.mgrid[0:96, 0:96]
    cx = (f30 * xx).sum() / f30.sum()
    cx0 = (frames[3] * xx).sum() / frames[3].sum()
    assert abs((cx - cx0) - 6 * u) < 1.0
