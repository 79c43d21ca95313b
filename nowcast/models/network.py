"""ConvLSTM encoder-forecaster (Shi et al. 2015; the HKO-7 "TrajGRU paper" layout with ConvLSTM
cells), optionally guided by an optical-flow extrapolation nowcast.

Tensors only; the xarray adapter is :mod:`nowcast.models.convlstm`.

Shapes (B batch, N input frames, C input channels, K leads, G guide channels):

- ``inputs``: (B, N, C, H, W) float; channels = scaled rain (``rainrate_to_scaled``, 0 = dry or
  unknown), coverage mask (1 = observed), and ``log1p(lightning count)`` when
  ``config.lightning``.
- ``guide``: (B, K, G, H, W) float or None; the guide nowcasts for every lead: the scaled rain
  of each of ``config.guide_sources`` in order (``"extrapolation"``: the LK-advected last frame;
  ``"sprog"``: the S-PROG nowcast, whose scale-dependent AR(2) decay removes the unpredictable
  small scales case by case), then with ``config.guide_tendency`` the Lagrangian tendency of the
  scaled rain at the init time (scaled units per step) advected to the lead, then advected
  lightning occurrence when ``config.lightning``.
  The first source is the residual base. Required unless ``config.advection == "none"``.
- outputs: ``(rain, lightning_logit)``, each (B, K, H, W): rain on the scaled (log) axis; in
  ``"residual"`` mode the network's rain output is a correction added to the guide's rain
  (with ``residual_zero_init`` zero at initialisation, so an untrained network forecasts the
  extrapolation nowcast). :meth:`EncoderForecaster.forward_all` also returns the
  exceedance logits (B, K, T, H, W) of ``P(rain >= probability_thresholds[t])`` (T = 0 when
  none are configured). With a guide they start from a **learned multiscale neighbourhood
  prior**: the guide's exceedance indicator is averaged over a pyramid of scales (1, 2, 4, ...
  cells, ``prior_levels`` levels, for each guide source) and mixed with per-lead,
  per-threshold softmax weights, so
  the forecast learns how far the extrapolated rain may be trusted at each lead (what S-PROG's
  scale-dependent smoothing does, fitted to the data by a proper score); the ConvLSTM head adds
  a correction to the logit of that prior (zero at initialisation). With ``prior_classes_m``
  each resolution class has its own prior weights (the pyramid's scales are cells, and a lead's
  displacement error is a distance), picked per sample by the grid's cell size
  (``forward_all(..., cell_size_m)``).

``guide_smoothing`` (cells): Gaussian-smoothed copies of the guide's rain channel are appended
to the guide inside the network (three passes of a box filter of matching variance, zero
outside the domain; cheap on CPU, unlike wide convolution kernels), so the
network can trade the sharp extrapolation for smoother fields as the lead grows, which is what
S-PROG's scale-dependent AR(2) smoothing does; the cached guide holds the unsmoothed nowcasts only.

H and W must be multiples of :meth:`EncoderForecaster.size_multiple`.

Layout: a full-resolution stem, then per level a strided convolution (downsampling by
``strides[l]``) and a ConvLSTM cell; the forecaster mirrors it top-down with its own cells
(initialised with the encoder's final states) and transposed convolutions for upsampling.
With a guide, each forecaster level also receives the guide frame of the current lead,
encoded by a small strided-convolution pyramid, and the output head sees the guide at full
resolution.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

AdvectionMode = Literal["none", "input", "residual"]
GuideSource = Literal["extrapolation", "sprog"]


class ModelConfig(BaseModel):
    """Architecture and input definition of the ConvLSTM nowcaster (the ``[model]`` table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_inputs: int = Field(5, ge=1, description="past frames fed to the encoder (the last is the init frame)")
    n_leads: int = Field(15, ge=1, description="lead times predicted, one per cadence step")
    cadence_minutes: int = Field(5, ge=1, description="time step of inputs and leads, minutes")
    channels: list[int] = Field(default_factory=lambda: [16, 32, 48], description="hidden channels per level")
    kernels: list[int] = Field(default_factory=lambda: [5, 3, 3], description="ConvLSTM kernel size per level (odd)")
    strides: list[int] = Field(default_factory=lambda: [2, 2, 2], description="downsampling factor entering each level")
    stem_channels: int = Field(8, ge=1)
    guide_channels: list[int] | None = Field(None, description="guide-pyramid channels per level (default: channels // 2)")
    advection: AdvectionMode = Field("residual", description="none | input | residual")
    oflow: str = Field("LK", description="pysteps optical-flow method for the guide")
    oflow_inputs: int = Field(3, ge=2, description="frames used for the guide's optical flow")
    lightning: bool = Field(True, description="lightning input channel and guide channel")
    residual_zero_init: bool = Field(False, description="residual mode: start with a zero correction (untrained network = extrapolation)")
    probability_thresholds: list[float] = Field(default_factory=list, description="mm/h; exceedance-probability heads P(rain >= t), increasing")
    guide_smoothing: list[float] = Field(default_factory=list, description="cells; Gaussian sigmas of smoothed guide-rain channels added inside the network")
    prior_levels: int = Field(0, ge=0, le=8, description="exceedance heads: pyramid levels (scales 1, 2, 4, ... cells) of the learned neighbourhood prior; 0 = sharp guide prior")
    prior_classes_m: list[float] = Field(
        default_factory=list,
        description="m; one learned neighbourhood prior per resolution class (a grid takes the class nearest its cell size on a log scale); empty = one prior for every grid",
    )
    guide_sources: list[GuideSource] = Field(
        default_factory=lambda: ["extrapolation"],
        description="guide rain nowcasts, in channel order; the first is the residual base (extrapolation | sprog)",
    )
    guide_tendency: bool = Field(
        False,
        description="a guide channel after the rain nowcasts: the Lagrangian tendency of the scaled rain at the init time "
        "(scaled units per cadence step, from the last oflow_inputs frames), advected to each lead",
    )

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        n = len(self.channels)
        if n < 1:
            raise ValueError("channels must list at least one level")
        if len(self.kernels) != n or len(self.strides) != n:
            raise ValueError(f"channels, kernels and strides must have the same length, got {n}, {len(self.kernels)}, {len(self.strides)}")
        if any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd positive sizes, got {self.kernels}")
        if any(s < 1 for s in self.strides) or any(c < 1 for c in self.channels):
            raise ValueError("strides and channels must be positive")
        if self.guide_channels is not None and len(self.guide_channels) != n:
            raise ValueError(f"guide_channels must have {n} entries, got {len(self.guide_channels)}")
        t = self.probability_thresholds
        if any(v <= 0 for v in t) or any(b <= a for a, b in zip(t, t[1:], strict=False)):
            raise ValueError(f"probability_thresholds must be positive and strictly increasing, got {t}")
        if any(v <= 0 for v in self.guide_smoothing):
            raise ValueError(f"guide_smoothing sigmas must be positive, got {self.guide_smoothing}")
        if not self.guide_sources or len(set(self.guide_sources)) != len(self.guide_sources):
            raise ValueError(f"guide_sources must name distinct sources, got {self.guide_sources}")
        if (self.guide_smoothing or self.prior_levels or self.guide_tendency) and self.advection == "none":
            raise ValueError("guide_smoothing, prior_levels and guide_tendency need a guide (advection 'input' or 'residual')")
        if self.prior_classes_m:
            c = self.prior_classes_m
            if not self.prior_levels or not self.probability_thresholds:
                raise ValueError("prior_classes_m needs the neighbourhood prior (prior_levels > 0 and probability_thresholds)")
            if any(v <= 0 for v in c) or len(set(c)) != len(c):
                raise ValueError(f"prior_classes_m must be distinct positive cell sizes (m), got {c}")
        return self

    @property
    def input_channels(self) -> int:
        return 3 if self.lightning else 2

    @property
    def guide_input_channels(self) -> int:
        """Channels of the guide given to the network (the cached guide: rain nowcasts, tendency, lightning)."""
        if self.advection == "none":
            return 0
        return len(self.guide_sources) + int(self.guide_tendency) + int(self.lightning)

    @property
    def guide_network_channels(self) -> int:
        """Guide channels inside the network: the given ones plus the smoothed rain copies."""
        return 0 if self.advection == "none" else self.guide_input_channels + len(self.guide_smoothing)

    @property
    def frames_needed(self) -> int:
        """History frames the adapter needs (encoder inputs and, when guided, the optical flow)."""
        return max(self.n_inputs, self.oflow_inputs if self.advection != "none" else 1)


class ConvLSTMCell(nn.Module):
    """ConvLSTM cell with per-channel peephole weights (Shi et al. 2015, eq. 3).

    ``forward(x, (h, c))`` with x (B, in, H, W) or None (no input), h/c (B, hidden, H, W).
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)
        self.w_ci = nn.Parameter(torch.zeros(1, hidden, 1, 1))
        self.w_cf = nn.Parameter(torch.zeros(1, hidden, 1, 1))
        self.w_co = nn.Parameter(torch.zeros(1, hidden, 1, 1))
        with torch.no_grad():  # forget-gate bias 1: remember by default
            self.conv.bias[hidden : 2 * hidden].fill_(1.0)

    def init_state(self, like: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = like.new_zeros(like.shape[0], self.hidden, height, width)
        return z, z.clone()

    def forward(self, x: torch.Tensor | None, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        z = self.conv(h if x is None else torch.cat([x, h], dim=1))
        i, f, g, o = torch.chunk(z, 4, dim=1)
        i = torch.sigmoid(i + self.w_ci * c)
        f = torch.sigmoid(f + self.w_cf * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + self.w_co * c)
        return o * torch.tanh(c), c


def _down(cin: int, cout: int, stride: int) -> nn.Module:
    """Strided convolution dividing H, W by ``stride`` exactly (when divisible)."""
    k = 2 * stride - 1
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=stride - 1), nn.LeakyReLU(0.2))


def _up(cin: int, cout: int, stride: int) -> nn.Module:
    """Transposed convolution multiplying H, W by ``stride`` exactly."""
    if stride == 1:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2))
    k, p = (2 * stride, stride // 2) if stride % 2 == 0 else (stride, 0)
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=p), nn.LeakyReLU(0.2))


class NetworkOutput(NamedTuple):
    """All outputs of :meth:`EncoderForecaster.forward_all`."""

    rain: torch.Tensor  #: (B, K, H, W) scaled rain
    lightning_logit: torch.Tensor  #: (B, K, H, W)
    exceedance_logit: torch.Tensor  #: (B, K, T, H, W), T = len(probability_thresholds)


def box_width(sigma: float, passes: int = 3) -> int:
    """Odd box width whose ``passes``-fold repetition has a standard deviation close to ``sigma``."""
    w = math.sqrt(12.0 * sigma * sigma / passes + 1.0)
    return max(3, int(round((w - 1) / 2)) * 2 + 1)


def box_filter_1d(x: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """Running mean of odd ``width`` along ``dim`` (-1 or -2) of (N, C, H, W), zero outside.

    A cumulative-sum difference: the same as ``avg_pool2d`` with ``count_include_pad`` but one
    subtraction per cell whatever the width (the pool's cost grows with the width).
    """
    r = width // 2
    pad = (r + 1, r, 0, 0) if dim == -1 else (0, 0, r + 1, r)
    c = nn.functional.pad(x, pad).cumsum(dim)
    n = x.shape[dim]
    return (c.narrow(dim, width, n) - c.narrow(dim, 0, n)) / width


def gaussian_like_blur(x: torch.Tensor, sigma: float, passes: int = 3) -> torch.Tensor:
    """Approximate Gaussian blur of (N, C, H, W) by ``passes`` separable box filters (zero outside)."""
    w = box_width(sigma, passes)
    for _ in range(passes):
        x = box_filter_1d(box_filter_1d(x, w, -1), w, -2)
    return x


class EncoderForecaster(nn.Module):
    """The ConvLSTM encoder-forecaster; see the module docstring for shapes."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        ch, ks, st = config.channels, config.kernels, config.strides
        n = len(ch)
        gch = config.guide_channels or [max(1, c // 2) for c in ch]
        self.guided = config.advection != "none"
        self.stem = nn.Sequential(nn.Conv2d(config.input_channels, config.stem_channels, 3, padding=1), nn.LeakyReLU(0.2))
        self.enc_down = nn.ModuleList()
        self.enc_cells = nn.ModuleList()
        prev = config.stem_channels
        for c, k, s in zip(ch, ks, st, strict=True):
            self.enc_down.append(_down(prev, c, s))
            self.enc_cells.append(ConvLSTMCell(c, c, k))
            prev = c
        if self.guided:
            gi = config.guide_network_channels
            self.guide_stem = nn.Sequential(nn.Conv2d(gi, config.stem_channels, 3, padding=1), nn.LeakyReLU(0.2))
            self.guide_down = nn.ModuleList()
            prev = config.stem_channels
            for g, s in zip(gch, st, strict=True):
                self.guide_down.append(_down(prev, g, s))
                prev = g
        # forecaster, indexed by level (0 = finest); level l receives the upsampled output of
        # level l+1 (none at the top) and the guide features of level l
        self.fc_cells = nn.ModuleList()
        self.fc_up = nn.ModuleList()
        for lvl in range(n):
            cin = (ch[lvl] if lvl + 1 < n else 0) + (gch[lvl] if self.guided else 0)
            self.fc_cells.append(ConvLSTMCell(cin, ch[lvl], ks[lvl]))
            out = ch[lvl - 1] if lvl > 0 else config.stem_channels
            # level l's output goes up to level l-1's resolution (or full resolution)
            self.fc_up.append(_up(ch[lvl], out, st[lvl]))
        head_in = config.stem_channels + config.guide_network_channels
        n_prob = len(config.probability_thresholds)
        self.head = nn.Sequential(nn.Conv2d(head_in, config.stem_channels, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(config.stem_channels, 2 + n_prob, 1))
        if n_prob:
            from nowcast.transforms import rainrate_to_scaled

            scaled = [float(rainrate_to_scaled(t)) for t in config.probability_thresholds]
            self.register_buffer("prob_offsets", torch.tensor(scaled, dtype=torch.float32), persistent=False)
            # prior logit slope per threshold (1/scaled units); learned
            self.prob_scale = nn.Parameter(torch.full((n_prob,), 8.0 if self.guided else 0.0))
            if config.prior_levels and self.guided:
                # per (lead, threshold) softmax weights over the pyramid levels; start near the
                # scale that grows with lead (about 0.75 cells per step, Germann-Zawadzki-like)
                lvl = torch.arange(config.prior_levels, dtype=torch.float32)
                want = torch.log2(1.0 + 0.75 * torch.arange(1, config.n_leads + 1, dtype=torch.float32))
                w = -2.0 * (lvl.view(1, 1, -1) - want.view(-1, 1, 1)).abs()
                w = w.repeat(1, 1, len(config.guide_sources))  # the same start for every guide source
                w = w.expand(config.n_leads, n_prob, w.shape[-1])
                if config.prior_classes_m:  # (C, K, T, S * L): the same start for every class
                    w = w.unsqueeze(0).expand(len(config.prior_classes_m), *w.shape)
                    self.register_buffer("prior_log_cells", torch.log(torch.tensor(config.prior_classes_m, dtype=torch.float32)), persistent=False)
                self.prior_logits = nn.Parameter(w.clone())
        if config.advection == "residual" and config.residual_zero_init:
            # zero correction at initialisation: training starts from the extrapolation nowcast
            with torch.no_grad():
                self.head[-1].weight[0].zero_()
                self.head[-1].bias[0].zero_()
                if n_prob:  # probabilities start at the guide's prior
                    self.head[-1].weight[2:].zero_()
                    self.head[-1].bias[2:].zero_()

    @staticmethod
    def size_multiple(config: ModelConfig) -> int:
        """H and W must be multiples of this (the product of the strides)."""
        return math.prod(config.strides)

    def _with_smoothed(self, guide: torch.Tensor) -> torch.Tensor:
        """(B, K, G, H, W) guide -> (B, K, G + S, H, W) with the smoothed rain channels appended."""
        if not self.config.guide_smoothing:
            return guide
        b, k, _, h, w = guide.shape
        rain = guide[:, :, 0].reshape(b * k, 1, h, w)
        extra = [gaussian_like_blur(rain, sigma).reshape(b, k, 1, h, w) for sigma in self.config.guide_smoothing]
        return torch.cat([guide, *extra], dim=2)

    def prior_classes(self, cell_size_m: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """(B,) index of each sample's prior class, nearest its cell size (m) on a log scale.

        None without ``prior_classes_m``, and for ``cell_size_m=None`` (a grid of unknown cell
        size), which gets the mean of the classes' prior weights.
        """
        if not self.config.prior_classes_m or cell_size_m is None:
            return None
        cells = torch.as_tensor(cell_size_m, dtype=torch.float32, device=self.prior_log_cells.device).reshape(-1)
        if cells.numel() == 1:
            cells = cells.expand(batch)
        if cells.numel() != batch or not bool(torch.all(cells > 0)):
            raise ValueError(f"cell_size_m must hold one positive cell size (m) per sample ({batch}), got {cells.tolist()}")
        return (torch.log(cells)[:, None] - self.prior_log_cells[None]).abs().argmin(dim=1)

    def _prior_weights(self, lead: int, classes: torch.Tensor | None) -> torch.Tensor:
        """Softmax prior weights at ``lead``: (1, T, S * L), or (B, T, S * L) per sample's class."""
        if not self.config.prior_classes_m:
            return torch.softmax(self.prior_logits[lead], dim=-1)[None]
        w = torch.softmax(self.prior_logits[:, lead], dim=-1)  # (C, T, S * L)
        return w.mean(dim=0, keepdim=True) if classes is None else w[classes]

    def neighbourhood_prior(self, guide_rain: torch.Tensor, lead: int, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Logit of the learned multiscale neighbourhood probability of exceedance at ``lead``.

        guide_rain: (B, S, H, W) scaled rain of the S guide sources at that lead; classes: (B,)
        prior class per sample (:meth:`prior_classes`; None = the only prior, or the classes'
        mean). Returns (B, T, H, W). Each source's exceedance indicator is averaged over a pyramid
        (2x2 means); the sources are mixed at each level's own resolution and each level is
        then upsampled once (bilinear is linear: the same mixture as upsampling every source).
        """
        b, n_src, h, w = guide_rain.shape
        offsets = self.prob_offsets.view(1, -1, 1, 1).to(guide_rain.dtype)
        weights = self._prior_weights(lead, classes)  # (1 or B, T, S * L), source-major
        n_lv = self.config.prior_levels
        levels = [torch.sigmoid(self.prob_scale.view(1, -1, 1, 1) * (guide_rain[:, src, None] - offsets)) for src in range(n_src)]  # (B, T, H, W)
        mix: torch.Tensor | None = None
        global_mean = False  # a level below 2 cells: it and every coarser one is the domain mean
        for lv in range(n_lv):
            if lv and not global_mean:
                if min(levels[0].shape[-2:]) < 2:
                    global_mean = True
                    levels = [lvl.mean(dim=(-2, -1), keepdim=True) for lvl in levels]
                else:
                    levels = [nn.functional.avg_pool2d(lvl, 2, ceil_mode=True) for lvl in levels]
            combined = weights[:, :, lv, None, None] * levels[0]
            for src in range(1, n_src):
                combined = combined + weights[:, :, src * n_lv + lv, None, None] * levels[src]
            if lv == 0:
                mix = combined
                continue
            if global_mean:
                up = combined.expand(-1, -1, h, w)
            else:
                up = nn.functional.interpolate(combined, size=(h, w), mode="bilinear", align_corners=False)
            mix = mix + up
        assert mix is not None
        mix = mix.clamp(1e-4, 1.0 - 1e-4)
        return torch.log(mix) - torch.log1p(-mix)

    def forward(self, inputs: torch.Tensor, guide: torch.Tensor | None = None, cell_size_m: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rain, lightning_logit)``, each (B, K, H, W); see :meth:`forward_all`."""
        out = self.forward_all(inputs, guide, cell_size_m)
        return out.rain, out.lightning_logit

    def forward_all(self, inputs: torch.Tensor, guide: torch.Tensor | None = None, cell_size_m: torch.Tensor | float | None = None) -> NetworkOutput:
        """Rain, lightning logit and exceedance logits; shapes in the module docstring.

        ``cell_size_m``: (B,) or scalar grid cell size in metres; picks each sample's prior class
        when ``config.prior_classes_m`` is set (ignored otherwise).
        """
        cfg = self.config
        if inputs.ndim != 5 or inputs.shape[2] != cfg.input_channels:
            raise ValueError(f"inputs must be (B, N, {cfg.input_channels}, H, W), got {tuple(inputs.shape)}")
        b, nt, _, hgt, wid = inputs.shape
        m = self.size_multiple(cfg)
        if hgt % m or wid % m:
            raise ValueError(f"H, W must be multiples of {m}, got {hgt}x{wid}")
        if self.guided:
            want = (b, cfg.n_leads, cfg.guide_input_channels, hgt, wid)
            if guide is None or tuple(guide.shape) != want:
                raise ValueError(f"advection={cfg.advection!r} needs guide {want}, got {None if guide is None else tuple(guide.shape)}")
            guide = self._with_smoothed(guide)
        classes = self.prior_classes(cell_size_m, b) if self.guided and cfg.prior_levels else None
        # encoder
        states: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.enc_cells)
        for t in range(nt):
            x = self.stem(inputs[:, t])
            for lvl, (down, cell) in enumerate(zip(self.enc_down, self.enc_cells, strict=True)):
                x = down(x)
                st = states[lvl] or cell.init_state(x, x.shape[-2], x.shape[-1])
                states[lvl] = cell(x, st)
                x = states[lvl][0]
        # forecaster
        fstates = list(states)
        rains, lights, probs = [], [], []
        for k in range(cfg.n_leads):
            gfeat: list[torch.Tensor] = []
            if self.guided:
                g = self.guide_stem(guide[:, k])
                for down in self.guide_down:
                    g = down(g)
                    gfeat.append(g)
            x = None
            for lvl in reversed(range(len(self.fc_cells))):
                parts = ([x] if x is not None else []) + ([gfeat[lvl]] if self.guided else [])
                inp = torch.cat(parts, dim=1) if parts else None
                fstates[lvl] = self.fc_cells[lvl](inp, fstates[lvl])
                x = self.fc_up[lvl](fstates[lvl][0])
            if self.guided:
                x = torch.cat([x, guide[:, k]], dim=1)
            out = self.head(x)
            rain = out[:, 0]
            if cfg.advection == "residual":
                rain = rain + guide[:, k, 0]
            rains.append(rain)
            lights.append(out[:, 1])
            if cfg.probability_thresholds:
                logit = out[:, 2:]
                if self.guided and cfg.prior_levels:
                    logit = logit + self.neighbourhood_prior(guide[:, k, : len(cfg.guide_sources)], k, classes)
                elif self.guided:
                    prior = guide[:, k, :1] - self.prob_offsets.view(1, -1, 1, 1).to(logit.dtype)
                    logit = logit + self.prob_scale.view(1, -1, 1, 1) * prior
                probs.append(logit)
        b, _, _, hgt, wid = inputs.shape
        exceed = torch.stack(probs, dim=1) if probs else inputs.new_zeros(b, cfg.n_leads, 0, hgt, wid)
        return NetworkOutput(torch.stack(rains, dim=1), torch.stack(lights, dim=1), exceed)
