"""The ``convlstm`` nowcaster: xarray in, xarray out, the torch network inside.

Also defines what the network sees (shared with the training dataset, so training and
inference cannot drift apart) and how checkpoints are read and checked.

Options: ``checkpoint`` (path; default: the weights shipped with the package, see
:mod:`nowcast.models.weights`), ``device`` ("cpu", "cuda", "auto"), ``min_rain`` (mm/h;
smaller forecast rates become 0, default 0.1), ``guide_cache`` (evaluation: a folder of
content-keyed float16 guides shared with training, see :func:`cached_guide`).

With a ``lightning_calibration`` in the checkpoint (isotonic per lead, fitted on validation
data; :mod:`nowcast.models.lightning_calibration`) the lightning probability is that of at least
one stroke in the cell during the interval ending at the lead time.

With exceedance heads and a ``calibration`` in the checkpoint (probability cuts per lead and
threshold, fitted on validation data by the training loop), the deterministic rain field is
made to exceed each threshold exactly where the calibrated probability says so
(:mod:`nowcast.models.calibration`); with cuts conditioned on the residual guide, the cut of a
cell depends on whether that guide (S-PROG) reaches the threshold there.

Cadence: the network works in steps of the history's cadence (motion in cells per step), so
any cadence is accepted; leads must be whole multiples of it, up to ``n_leads`` steps.

NaN / no-rain rules: NaN inputs are 0 in the rain channel with coverage 0 in the mask
channel; the forecast is NaN where the last frame is NaN (lightning probability also where
the last lightning field is NaN), as for the baselines (:mod:`nowcast.models.motion`). An
input whose last frame holds no rain gives a dry rain forecast (the network is not asked to
invent rain from nothing).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.grid import Grid
from nowcast.models import motion
from nowcast.models.base import forecast_dataset
from nowcast.models.calibration import ThresholdCalibration, apply_threshold_calibration
from nowcast.models.lightning_calibration import LightningCalibration
from nowcast.models.network import ModelConfig
from nowcast.transforms import rainrate_to_scaled, scaled_to_rainrate

log = logging.getLogger(__name__)

#: value of the checkpoint's "format" key
CHECKPOINT_FORMAT = "nowcast.convlstm"
CHECKPOINT_FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


# -- features -------------------------------------------------------------------------------
def input_features(rain: np.ndarray, lightning: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Encoder inputs from the last ``config.n_inputs`` frames.

    rain, lightning: (N, y, x) float32 (mm/h, counts; NaN = unknown).
    Returns (N, C, y, x) float32: scaled rain, coverage mask, [log1p lightning].
    """
    rain = rain[-config.n_inputs :]
    cov = np.isfinite(rain).astype(dims.FLOAT)
    chans = [rainrate_to_scaled(motion.fill(rain)).astype(dims.FLOAT), cov]
    if config.lightning:
        chans.append(np.log1p(motion.fill(lightning[-config.n_inputs :])).astype(dims.FLOAT))
    return np.stack(chans, axis=1)


def guide_motion(rain: np.ndarray, lightning: np.ndarray, config: ModelConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """The guide's motion: ``(velocity (2, y, x) cells/step, trajectory (n_leads, 2, y, x) or None)``.

    rain: the last ``config.oflow_inputs`` frames (N, y, x) mm/h; no motion (zeros, no
    trajectory) when neither the last rain frame nor the last lightning frame has anything to move.
    """
    ny, nx = rain.shape[1:]
    if motion.has_rain(rain) or np.any(np.nan_to_num(lightning[-1]) > 0):
        velocity = motion.estimate_motion(rain, config.oflow)
    else:
        velocity = np.zeros((2, ny, nx), dtype=dims.FLOAT)
    # one trajectory for every advected field (bit-identical to advecting each with pysteps)
    path = motion.trajectory(velocity, config.n_leads) if np.any(velocity) else None
    return velocity, path


TENDENCY_SMOOTHING_CELLS = 1.0
"""Gaussian sigma (cells) of the tendency field before it is advected: damps the bilinear
interpolation noise at sharp rain edges."""


def lagrangian_tendency(rain: np.ndarray, velocity: np.ndarray, path: np.ndarray | None) -> np.ndarray:
    """Rate of change of the scaled rain following the motion, at the init time (y, x) float32.

    rain: (N >= 2, y, x) mm/h, the frames the motion was estimated from; the first is advected
    N - 1 steps to the init time and compared with the last: ``(s(R_0) - s(adv R_-m)) / m``
    scaled units per step (``m = N - 1``, ``s`` = :func:`rainrate_to_scaled`; positive = growth).
    0 where either frame is unobserved or the advected frame came from outside the domain;
    smoothed by :data:`TENDENCY_SMOOTHING_CELLS`.
    """
    from scipy import ndimage

    m = rain.shape[0] - 1
    first, last = rain[0], rain[-1]
    step = np.array([float(m)])
    use_path = path if path is not None and len(path) >= m else None
    moved = motion.advect(first, velocity, step, path=use_path)[0]
    seen = motion.advect(np.isfinite(first).astype(dims.FLOAT), velocity, step, path=use_path)[0] >= 0.999
    valid = seen & np.isfinite(last)
    diff = (rainrate_to_scaled(motion.fill(last)) - rainrate_to_scaled(np.maximum(moved, 0.0))) / m
    smoothed = ndimage.gaussian_filter(np.where(valid, diff, 0.0), TENDENCY_SMOOTHING_CELLS, mode="constant")
    return np.where(valid, smoothed, 0.0).astype(dims.FLOAT)


def tendency_features(rain: np.ndarray, velocity: np.ndarray, path: np.ndarray | None, config: ModelConfig) -> np.ndarray:
    """(K, y, x) float32: :func:`lagrangian_tendency` of the last ``oflow_inputs`` frames advected
    to leads 1..n_leads along the guide's motion (0 advected in from outside the domain)."""
    steps = np.arange(1, config.n_leads + 1, dtype=np.float64)
    t0 = lagrangian_tendency(rain[-config.oflow_inputs :], velocity, path)
    return motion.advect(t0, velocity, steps, path=path)


def guide_features(rain: np.ndarray, lightning: np.ndarray, config: ModelConfig) -> np.ndarray | None:
    """The guide nowcasts for leads 1..n_leads (cadence steps) as guide channels.

    rain, lightning: (N, y, x) float32; the last ``config.oflow_inputs`` frames give the motion
    (and S-PROG's AR(2) history). Returns (K, G, y, x) float32: the scaled rain of each of
    ``config.guide_sources`` (LK extrapolation, S-PROG on the same motion field), then the
    advected Lagrangian tendency when ``config.guide_tendency``, then the advected lightning
    occurrence when ``config.lightning``; None when ``advection == "none"``.
    Expensive (optical flow, cascades): the training dataset caches it.
    """
    if config.advection == "none":
        return None
    steps = np.arange(1, config.n_leads + 1, dtype=np.float64)
    r = rain[-config.oflow_inputs :]
    velocity, path = guide_motion(r, lightning, config)
    extrapolated = np.maximum(motion.advect(r[-1], velocity, steps, path=path), 0.0)
    rains = {"extrapolation": extrapolated}
    if "sprog" in config.guide_sources:
        from nowcast.models.sprog import sprog_rain

        rains["sprog"] = sprog_rain(r, velocity, steps, extrapolated, ar_order=min(2, config.oflow_inputs - 1), path=path)
    chans = [rainrate_to_scaled(rains[src]).astype(dims.FLOAT) for src in config.guide_sources]
    if config.guide_tendency:
        chans.append(tendency_features(r, velocity, path, config))
    if config.lightning:
        occ = (np.nan_to_num(lightning[-1]) > 0).astype(dims.FLOAT)
        chans.append(np.clip(motion.advect(occ, velocity, steps, path=path), 0.0, 1.0))
    return np.stack(chans, axis=1)


def guide_key(rain: np.ndarray, lightning: np.ndarray, config: ModelConfig) -> str:
    """Content key of a guide: the guide settings and the bytes of the frames it is made from.

    rain: the last ``config.oflow_inputs`` frames (N, y, x) float32; lightning: (N', y, x).
    """
    h = hashlib.sha256()
    h.update(f"{config.oflow}|{config.oflow_inputs}|{config.n_leads}|{config.lightning}|{config.advection != 'none'}|v1".encode())
    if config.guide_sources != ["extrapolation"]:  # keys of extrapolation-only guides stay as they were
        h.update(("|sources=" + ",".join(config.guide_sources)).encode())
    if config.guide_tendency:  # keys without the tendency stay as they were
        h.update(f"|tendency={TENDENCY_SMOOTHING_CELLS}".encode())
    h.update(np.ascontiguousarray(rain).tobytes())
    if config.lightning:
        h.update(np.ascontiguousarray(np.nan_to_num(lightning[-1], nan=-1.0)).tobytes())
    return h.hexdigest()[:32]


def cached_guide(rain: np.ndarray, lightning: np.ndarray, config: ModelConfig, cache_dir: Path) -> tuple[np.ndarray, Path]:
    """:func:`guide_features` through a content-keyed on-disk cache of float16 ``.npy`` files.

    rain/lightning: (N, y, x) float32 history (the last ``oflow_inputs`` frames key the entry).
    Returns ``(guide (K, G, y, x) float32, file)``. Writes are atomic, so concurrent training
    ranks and evaluation workers can share one cache; the training dataset reads the same files.
    A guide with the tendency channel reuses the cached guide without it when there is one
    (the rain nowcasts are the expensive part), adding the channel.
    """
    rain = np.asarray(rain, dtype=dims.FLOAT)
    path = _guide_file(rain, lightning, config, cache_dir)
    if path.is_file():
        return np.load(path).astype(dims.FLOAT), path
    if config.advection == "none":
        raise ValueError("cached_guide: the model has no guide (advection = 'none')")
    base_path = _guide_file(rain, lightning, config.model_copy(update={"guide_tendency": False}), cache_dir) if config.guide_tendency else None
    if base_path is not None and base_path.is_file():
        base = np.load(base_path).astype(dims.FLOAT)
        r = rain[-config.oflow_inputs :]
        velocity, traj = guide_motion(r, lightning, config)
        n_rain = len(config.guide_sources)
        tendency = tendency_features(r, velocity, traj, config)[:, None]
        g = np.concatenate([base[:, :n_rain], tendency, base[:, n_rain:]], axis=1)
    else:
        g = guide_features(rain, lightning, config)
    return _save_guide(g, path), path


def _guide_file(rain: np.ndarray, lightning: np.ndarray, config: ModelConfig, cache_dir: Path) -> Path:
    """The cache file of the guide of ``config`` for this history (content key, :func:`guide_key`)."""
    return Path(cache_dir) / f"guide-{guide_key(rain[-config.oflow_inputs :], lightning, config)}.npy"


def _save_guide(guide: np.ndarray, path: Path) -> np.ndarray:
    """Write ``guide`` as float16 atomically (concurrent readers never see half a file); returns
    what a later read of the file gives (float32 of the float16 values)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, guide.astype(np.float16))
    os.replace(tmp, path)
    return guide.astype(np.float16).astype(dims.FLOAT)


def residual_base_rate(guides: np.ndarray) -> np.ndarray:
    """(K, y, x) mm/h: the rain rate of the residual base (the first guide source, e.g. S-PROG's
    nowcast) in guide features (K, G, y, x); guide-conditioned cuts split the cells on it."""
    return np.asarray(scaled_to_rainrate(np.asarray(guides[:, 0], dtype=np.float32)), dtype=dims.FLOAT)


# -- checkpoints ----------------------------------------------------------------------------
def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint file; raises :class:`CheckpointError` naming file and reason."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(p, "checkpoint file not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(p, f"not a readable checkpoint (truncated or corrupted?): {type(exc).__name__}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(p, f"not a nowcast ConvLSTM checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if ckpt.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(p, f"unsupported checkpoint format version {ckpt.get('format_version')!r} (expected {CHECKPOINT_FORMAT_VERSION})")
    for key in ("model_config", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(p, f"checkpoint has no {key!r}")
    try:
        ModelConfig.model_validate(ckpt["model_config"])
    except Exception as exc:
        raise CheckpointError(p, f"invalid model_config: {exc}") from exc
    return ckpt


def build_network(ckpt: dict[str, Any], path: str | Path, expected: ModelConfig | None = None):  # -> EncoderForecaster
    """The network described by a checkpoint, with its weights loaded (on CPU).

    ``expected``: when given, the checkpoint's model config must equal it (e.g. on resume).
    Raises :class:`CheckpointError` on a mismatch between config and weights.
    """
    from nowcast.models.network import EncoderForecaster

    config = ModelConfig.model_validate(ckpt["model_config"])
    if expected is not None and config != expected:
        a, b = config.model_dump(), expected.model_dump()
        diff = ", ".join(f"{k}: checkpoint {a[k]!r} vs requested {b[k]!r}" for k in a if a[k] != b[k])
        raise CheckpointError(path, f"model configuration does not match ({diff})")
    net = EncoderForecaster(config)
    try:
        net.load_state_dict(ckpt["state_dict"], strict=True)
    except Exception as exc:
        raise CheckpointError(path, f"weights do not match the architecture in its model_config: {exc}") from exc
    return net


def file_hash(path: str | Path) -> str:
    """First 12 hex digits of the file's SHA-256 (the model version)."""
    from nowcast.provenance import sha256_file

    return sha256_file(path)[:12]


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when available else "cpu"; "cuda" without CUDA is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    return device


def pad_to_multiple(a: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad the last two axes of ``a`` up to multiples of ``multiple``; returns (padded, (ny, nx))."""
    ny, nx = a.shape[-2:]
    py, px = (-ny) % multiple, (-nx) % multiple
    if py or px:
        a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, py), (0, px)])
    return a, (ny, nx)


def cell_size_of(history: xr.Dataset) -> float | None:
    """The cell size (m) of ``history``'s grid; None when it carries no CRS (classless cuts)."""
    try:
        return Grid.of(history).cell_size_m
    except dims.DataModelError:
        log.debug("convlstm: history carries no CRS; using the pooled probability cuts")
        return None


# -- the nowcaster --------------------------------------------------------------------------
class ConvLSTMNowcaster:
    """Trained ConvLSTM encoder-forecaster (registry name ``convlstm``)."""

    name = "convlstm"

    def __init__(self, checkpoint: str | Path | None = None, device: str = "cpu", min_rain: float = 0.1, guide_cache: str | Path | None = None) -> None:
        import torch

        if checkpoint is None:
            from nowcast.models.weights import default_checkpoint

            checkpoint = default_checkpoint("real")

        self.checkpoint = Path(checkpoint)
        ckpt = read_checkpoint(self.checkpoint)
        self.config = ModelConfig.model_validate(ckpt["model_config"])
        self.device = resolve_device(device)
        self.net = build_network(ckpt, self.checkpoint).to(self.device).eval()
        self.min_rain = float(min_rain)
        #: evaluation only: read/write guides through the training's content-keyed cache (float16)
        self.guide_cache = Path(guide_cache) if guide_cache else None
        self.n_inputs = self.config.frames_needed
        self.cadence = pd.Timedelta(minutes=self.config.cadence_minutes)
        self._version = file_hash(self.checkpoint)
        self._torch = torch
        cal = ckpt.get("calibration")
        self.calibration = ThresholdCalibration.from_dict(cal) if cal and self.config.probability_thresholds else None
        light_cal = ckpt.get("lightning_calibration")
        #: isotonic per-lead calibration of the lightning probability (fitted on validation data)
        self.lightning_calibration = LightningCalibration.from_dict(light_cal) if light_cal and self.config.lightning else None

    @property
    def version(self) -> str:
        return self._version

    def _lead_index(self, leads: Sequence[pd.Timedelta], cadence: pd.Timedelta) -> np.ndarray:
        if cadence != self.cadence:
            log.debug("convlstm: history cadence %s differs from the training cadence %s; forecasting in steps of %s", cadence, self.cadence, cadence)
        steps = motion.lead_steps(leads, cadence)
        idx = np.rint(steps).astype(int)
        bad = [str(pd.Timedelta(x)) for x, s, i in zip(pd.to_timedelta(list(leads)), steps, idx, strict=True) if abs(s - i) > 1e-9 or i > self.config.n_leads]
        if bad:
            valid = f"multiples of the history cadence {cadence} up to {cadence * self.config.n_leads}"
            raise motion.ForecastInputError(f"convlstm: unsupported lead times {bad}; valid: {valid}")
        return idx - 1

    def predict_arrays(self, rain: np.ndarray, lightning: np.ndarray, cell_size_m: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on (N, y, x) rain mm/h / lightning counts.

        Returns (n_leads, y, x) float32 rain rate mm/h (no coverage mask applied; calibrated
        when the checkpoint has a calibration) and lightning probability in [0, 1].
        ``cell_size_m``: the grid's cell size, which picks a resolution class's probability cuts
        and neighbourhood prior (None: the pooled cuts, the mean of the class priors).
        """
        rate, prob, _ = self.predict_all(rain, lightning, cell_size_m)
        return rate, prob

    def guides(self, rain: np.ndarray, lightning: np.ndarray) -> np.ndarray | None:
        """The guide nowcasts (n_leads, G, y, x), scaled as the network sees them (through the
        cache when the nowcaster has one); None for a model without a guide."""
        cfg = self.config
        if self.guide_cache is not None and cfg.advection != "none":
            return cached_guide(rain, lightning, cfg, self.guide_cache)[0]
        return guide_features(rain, lightning, cfg)

    def predict_all(
        self, rain: np.ndarray, lightning: np.ndarray, cell_size_m: float | None = None, guides: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`predict_arrays`, plus the exceedance probabilities (n_leads, T, y, x)
        for ``config.probability_thresholds`` (T = 0 without heads). ``guides``: this history's
        :meth:`guides`, when the caller already has them (computed here otherwise)."""
        torch = self._torch
        cfg = self.config
        x = input_features(rain, lightning, cfg)
        g = self.guides(rain, lightning) if guides is None else guides
        base = residual_base_rate(g) if g is not None and self.calibration is not None and self.calibration.conditioned else None
        mult = max(1, int(np.prod(cfg.strides)))
        x, (ny, nx) = pad_to_multiple(x, mult)
        xt = torch.from_numpy(x)[None].to(self.device)
        gt = None
        if g is not None:
            g, _ = pad_to_multiple(g, mult)
            gt = torch.from_numpy(g)[None].to(self.device)
        use_bf16 = self.device.startswith("cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            out = self.net.forward_all(xt, gt, cell_size_m)
        rain_s = out.rain.float()[0, :, :ny, :nx].cpu().numpy()
        prob = torch.sigmoid(out.lightning_logit.float())[0, :, :ny, :nx].cpu().numpy()
        if self.lightning_calibration is not None:
            prob = self.lightning_calibration.apply(prob)
        exceed = torch.sigmoid(out.exceedance_logit.float())[0, :, :, :ny, :nx].cpu().numpy().astype(dims.FLOAT, copy=False)
        rate = np.asarray(scaled_to_rainrate(rain_s), dtype=dims.FLOAT)
        if self.calibration is not None:
            rate = apply_threshold_calibration(rate, exceed, self.calibration, guide=base, cell_size_m=cell_size_m)
        rate[rate < self.min_rain] = 0.0
        return rate, prob.astype(dims.FLOAT), exceed

    def forecast(self, history: xr.Dataset, leads: Sequence[pd.Timedelta] = dims.DEFAULT_LEADS) -> xr.Dataset:
        """ConvLSTM nowcast from the last frames of ``history`` (time, y, x); see the module docstring."""
        rain, light = motion.history_arrays(history, self.n_inputs, self.name)
        idx = self._lead_index(leads, motion.cadence_of(history, self.cadence))
        by_class = (self.calibration is not None and bool(self.calibration.classes)) or bool(self.config.prior_classes_m)
        rate, prob = self.predict_arrays(rain, light, cell_size_of(history) if by_class else None)
        rate, prob = rate[idx], prob[idx]
        if not motion.has_rain(rain):
            rate = np.zeros_like(rate)
        rate, prob = motion.mask_outputs(rate, prob, rain[-1], light[-1])
        return forecast_dataset(rate, prob, history, leads, self.name, self.version)
