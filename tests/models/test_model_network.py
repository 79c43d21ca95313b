"""The ConvLSTM encoder-forecaster: shapes, gradients, devices, residual mode."""

from __future__ import annotations

import pytest
import torch

from nowcast.models.network import ConvLSTMCell, EncoderForecaster, ModelConfig


def _cfg(**kw) -> ModelConfig:  # noqa: ANN003
    base = dict(n_inputs=3, n_leads=4, channels=[4, 8], kernels=[3, 3], strides=[2, 2], stem_channels=4)
    base.update(kw)
    return ModelConfig(**base)


def _inputs(cfg: ModelConfig, b: int = 2, h: int = 16, w: int = 24) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, cfg.n_inputs, cfg.input_channels, h, w, generator=g)
    guide = torch.rand(b, cfg.n_leads, cfg.guide_input_channels, h, w, generator=g) if cfg.advection != "none" else None
    return x, guide


@pytest.mark.parametrize("advection", ["none", "input", "residual"])
@pytest.mark.parametrize("lightning", [True, False])
def test_shapes(advection: str, lightning: bool) -> None:
    cfg = _cfg(advection=advection, lightning=lightning)
    net = EncoderForecaster(cfg)
    x, g = _inputs(cfg)
    rain, light = net(x, g)
    assert rain.shape == light.shape == (2, 4, 16, 24)


def test_three_levels_and_stride_four() -> None:
    cfg = _cfg(channels=[4, 6, 8], kernels=[3, 3, 1], strides=[1, 2, 4])
    net = EncoderForecaster(cfg)
    assert EncoderForecaster.size_multiple(cfg) == 8
    x, g = _inputs(cfg, h=16, w=32)
    assert net(x, g)[0].shape == (2, 4, 16, 32)


def test_every_parameter_gets_a_gradient() -> None:
    cfg = _cfg()
    net = EncoderForecaster(cfg)
    x, g = _inputs(cfg)
    rain, light = net(x, g)
    (rain.square().mean() + light.mean()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert sum(float(p.grad.abs().sum()) > 0 for p in net.parameters()) == len(list(net.parameters()))


def test_all_state_moves_with_the_module() -> None:
    net = EncoderForecaster(_cfg()).to(torch.float64)
    assert {p.dtype for p in net.parameters()} | {b.dtype for b in net.buffers()} == {torch.float64}
    meta = EncoderForecaster(_cfg()).to("meta")
    assert {p.device.type for p in meta.parameters()} == {"meta"}
    # the peephole weights are registered parameters of every cell
    cell = ConvLSTMCell(2, 3, 3)
    assert {"w_ci", "w_cf", "w_co"} <= {n for n, _ in cell.named_parameters()}
    x, g = _inputs(_cfg())
    out = net(x.double(), g.double())[0]
    assert out.dtype == torch.float64


def test_residual_mode_adds_the_guide() -> None:
    cfg = _cfg(advection="residual")
    net = EncoderForecaster(cfg)
    last = net.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    x, g = _inputs(cfg)
    rain, _ = net(x, g)
    torch.testing.assert_close(rain, g[:, :, 0])


def test_bad_sizes_and_missing_guide_are_refused() -> None:
    cfg = _cfg(advection="input")
    net = EncoderForecaster(cfg)
    x, g = _inputs(cfg, h=18, w=24)
    with pytest.raises(ValueError, match="multiples of 4"):
        net(x, g)
    x, g = _inputs(cfg)
    with pytest.raises(ValueError, match="guide"):
        net(x, None)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="same length"):
        ModelConfig(channels=[4, 8], kernels=[3], strides=[2, 2])
    with pytest.raises(ValueError, match="odd"):
        ModelConfig(channels=[4], kernels=[4], strides=[2])
    with pytest.raises(ValueError):
        ModelConfig(advection="sideways")


def test_untrained_residual_network_is_the_extrapolation() -> None:
    cfg = _cfg(advection="residual", residual_zero_init=True)
    x, g = _inputs(cfg)
    rain, _ = EncoderForecaster(cfg)(x, g)
    torch.testing.assert_close(rain, g[:, :, 0])
    for other in (_cfg(advection="input"), _cfg(advection="residual")):
        assert not torch.allclose(EncoderForecaster(other)(x, g)[0], g[:, :, 0])
