"""The Lagrangian-tendency guide channel: sign and size on known fields, channel layout, and the
cache that adds it to an already cached guide without recomputing the rain nowcasts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nowcast.models import convlstm
from nowcast.models.network import EncoderForecaster, ModelConfig
from nowcast.transforms import rainrate_to_scaled


def blob(ny: int, nx: int, cy: float, cx: float, peak: float, sigma: float = 6.0) -> np.ndarray:
    y, x = np.mgrid[0:ny, 0:nx]
    return (peak * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))).astype(np.float32)


def history(peaks: list[float], shift: float = 2.0, size: int = 64) -> np.ndarray:
    """Frames (N, y, x) mm/h of one blob moving ``shift`` cells per step in x, with given peaks."""
    return np.stack([blob(size, size, 32, 20 + shift * i, p) for i, p in enumerate(peaks)])


def test_growing_cell_has_positive_tendency_and_steady_cell_none() -> None:
    steady = history([20.0, 20.0, 20.0])
    growing = history([5.0, 10.0, 20.0])
    zero = np.zeros((2, 64, 64), np.float32)
    v = np.zeros((2, 64, 64), np.float32)
    v[0] = 2.0  # the true motion: 2 cells/step in x
    t_steady = convlstm.lagrangian_tendency(steady, v, None)
    t_grow = convlstm.lagrangian_tendency(growing, v, None)
    core = (32, 24)  # where the blob is at the init time
    assert abs(t_steady[core]) < 0.02
    # growth from 5 to 20 mm/h in 2 steps: half the scaled difference per step
    want = (rainrate_to_scaled(20.0) - rainrate_to_scaled(5.0)) / 2
    assert t_grow[core] == pytest.approx(want, rel=0.05)
    # without the motion the moving steady cell looks like growth ahead and decay behind
    t_eulerian = convlstm.lagrangian_tendency(steady, zero, None)
    assert t_eulerian[32, 30] > 0.1 and t_eulerian[32, 16] < -0.1


def test_unobserved_and_inflow_cells_have_no_tendency() -> None:
    frames = history([5.0, 10.0, 20.0])
    frames[-1, :, 50:] = np.nan  # the last frame does not see these columns
    v = np.zeros((2, 64, 64), np.float32)
    v[0] = 3.0
    t = convlstm.lagrangian_tendency(frames, v, None)
    assert np.all(t[:, 50:] == 0)  # unobserved
    assert np.all(t[:, :6] == 0)  # advected in from outside the domain: no past frame there


def tendency_config(**kw: object) -> ModelConfig:
    base = dict(n_inputs=3, n_leads=4, channels=[4], kernels=[3], strides=[2], stem_channels=4, lightning=False,
                guide_sources=["sprog", "extrapolation"], oflow_inputs=3)
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def test_tendency_channel_sits_after_the_rain_nowcasts_and_moves_with_the_motion() -> None:
    rain = history([5.0, 10.0, 20.0], shift=2.0)
    light = np.zeros_like(rain)
    without = convlstm.guide_features(rain, light, tendency_config())
    with_t = convlstm.guide_features(rain, light, tendency_config(guide_tendency=True))
    assert without.shape == (4, 2, 64, 64) and with_t.shape == (4, 3, 64, 64)
    np.testing.assert_array_equal(with_t[:, :2], without)
    tend = with_t[:, 2]
    # the growth maximum moves with the cell (about 2 cells a step in x)
    xs = [int(np.argmax(tend[k].max(axis=0))) for k in range(4)]
    assert xs[-1] - xs[0] >= 4
    assert tend.max() > 0.1


def test_cached_guide_adds_the_channel_to_a_cached_guide_without_recomputing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rain = history([5.0, 10.0, 20.0])
    light = np.zeros_like(rain)
    base_cfg, cfg = tendency_config(), tendency_config(guide_tendency=True)
    base, base_file = convlstm.cached_guide(rain, light, base_cfg, tmp_path)
    direct = convlstm.guide_features(rain, light, cfg)

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("the rain nowcasts were recomputed")

    monkeypatch.setattr(convlstm, "guide_features", boom)
    g, file = convlstm.cached_guide(rain, light, cfg, tmp_path)
    assert file != base_file and file.is_file()
    np.testing.assert_allclose(g, direct.astype(np.float16).astype(np.float32), atol=0)
    again, _ = convlstm.cached_guide(rain, light, cfg, tmp_path)  # now read from its own file
    np.testing.assert_array_equal(again, g)


def test_network_takes_the_extra_channel_and_rejects_a_guide_without_it() -> None:
    import torch

    cfg = tendency_config(guide_tendency=True, advection="residual")
    assert cfg.guide_input_channels == 3
    net = EncoderForecaster(cfg)
    x = torch.zeros(1, 3, cfg.input_channels, 16, 16)
    out = net.forward_all(x, torch.zeros(1, 4, 3, 16, 16))
    assert out.rain.shape == (1, 4, 16, 16)
    with pytest.raises(ValueError, match="needs guide"):
        net(x, torch.zeros(1, 4, 2, 16, 16))
    with pytest.raises(ValueError, match="guide_tendency need a guide"):
        tendency_config(guide_tendency=True, advection="none")
