"""Losses of the ConvLSTM nowcaster, all masked where the observation is NaN.

- rain: "balanced" weighted MSE + MAE on the scaled (log) rain axis, with weights rising with
  the observed intensity (Shi et al. 2017, HKO-7), plus a soft threshold-exceedance BCE:
  ``sigmoid((pred - scaled(thr)) / temperature)`` against ``obs >= thr`` at e.g. 1 and 5
  mm/h, so that the network is rewarded for getting heavy rain above thresholds (plain MSE
  blurs it away); or, with ``exceedance_loss = "soft_csi"``, 1 - a differentiable CSI of those
  probabilities over the batch, which the many dry cells cannot swamp.
- lightning: BCE with logits on occurrence (count > 0), ``pos_weight`` for the rare positives.
- exceedance heads (``probability_thresholds`` of the model): BCE with logits of
  ``P(rain >= t)`` against the observed exceedance, a proper score, so the heads learn
  calibrated probabilities (``exceedance_head_weight``). Their logits are (B, K, T, H, W).
  Optionally (``exceedance_head_csi_weight``) 1 - a soft CSI of those probabilities per lead is
  added, aiming the heads at the threshold areas the deterministic field is cut from.

Shapes: every tensor (B, K, H, W); masks bool. Each term is a masked mean, so DDP ranks with
equally many valid cells average to the single-process loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nowcast.transforms import rainrate_to_scaled
from training.config import TrainOptions


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def intensity_weights(rate: torch.Tensor, opts: TrainOptions) -> torch.Tensor:
    """Weight per cell from the observed rate (mm/h) and the configured classes."""
    edges = torch.tensor(opts.intensity_thresholds, dtype=rate.dtype, device=rate.device)
    weights = torch.tensor(opts.intensity_weights, dtype=rate.dtype, device=rate.device)
    return weights[torch.bucketize(rate, edges, right=True)]


def rain_loss(pred: torch.Tensor, target: torch.Tensor, rate: torch.Tensor, mask: torch.Tensor, opts: TrainOptions) -> torch.Tensor:
    """pred/target: scaled rain; rate: observed mm/h (0 where unknown); mask: observed."""
    pred = pred.float()
    err = pred - target
    w = intensity_weights(rate, opts)
    loss = _masked_mean(w * (opts.mse_weight * err**2 + opts.mae_weight * err.abs()), mask)
    if opts.exceedance_weight > 0 and opts.exceedance_thresholds:
        terms = []
        for thr in opts.exceedance_thresholds:
            logit = (pred - float(rainrate_to_scaled(thr))) / opts.exceedance_temperature
            obs = (rate >= thr).to(pred.dtype)
            if opts.exceedance_loss == "soft_csi":
                terms.append(soft_csi_loss(torch.sigmoid(logit), obs, mask))
            else:
                bce = F.binary_cross_entropy_with_logits(logit, obs, reduction="none")
                terms.append(_masked_mean(bce, mask))
        loss = loss + opts.exceedance_weight * torch.stack(terms).mean()
    return loss


def soft_csi_loss(prob: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - CSI with forecast "yes" replaced by a probability, over all masked cells of the batch."""
    m = mask.to(prob.dtype)
    p, o = prob * m, obs * m
    inter = (p * o).sum()
    union = p.sum() + o.sum() - inter
    return 1.0 - (inter + 1.0) / (union + 1.0)


def head_soft_csi_loss(logits: torch.Tensor, rate: torch.Tensor, mask: torch.Tensor, thresholds: tuple[float, ...] | list[float]) -> torch.Tensor:
    """Mean over leads and thresholds of :func:`soft_csi_loss` of the heads' probabilities
    (logits (B, K, T, H, W)) against ``rate >= t`` (B, K, H, W), each lead pooled over the batch."""
    terms = [soft_csi_loss(torch.sigmoid(logits[:, k, j].float()), (rate[:, k] >= t).float(), mask[:, k])
             for j, t in enumerate(thresholds) for k in range(logits.shape[1])]
    return torch.stack(terms).mean()


def lightning_loss(logit: torch.Tensor, occurrence: torch.Tensor, mask: torch.Tensor, opts: TrainOptions) -> torch.Tensor:
    """BCE with logits on lightning occurrence (0/1), masked where the lightning is unknown."""
    pw = torch.tensor(opts.lightning_pos_weight, dtype=torch.float32, device=logit.device)
    bce = F.binary_cross_entropy_with_logits(logit.float(), occurrence.float(), reduction="none", pos_weight=pw)
    return _masked_mean(bce, mask)


def exceedance_head_loss(logits: torch.Tensor, rate: torch.Tensor, mask: torch.Tensor, thresholds: tuple[float, ...] | list[float]) -> torch.Tensor:
    """Mean over thresholds of the masked BCE of logits (B, K, T, H, W) vs ``rate >= t``."""
    terms = []
    for j, t in enumerate(thresholds):
        obs = (rate >= t).to(logits.dtype)
        terms.append(_masked_mean(F.binary_cross_entropy_with_logits(logits[:, :, j], obs, reduction="none"), mask))
    return torch.stack(terms).mean()


def total_loss(
    rain: torch.Tensor,
    light_logit: torch.Tensor,
    batch: dict[str, torch.Tensor],
    opts: TrainOptions,
    use_lightning: bool,
    exceedance_logit: torch.Tensor | None = None,
    probability_thresholds: tuple[float, ...] | list[float] = (),
) -> torch.Tensor:
    """The training objective for one batch (see the module docstring)."""
    loss = rain_loss(rain, batch["target"], batch["target_rate"], batch["mask"], opts)
    if probability_thresholds and exceedance_logit is not None and opts.exceedance_head_weight > 0:
        loss = loss + opts.exceedance_head_weight * exceedance_head_loss(exceedance_logit, batch["target_rate"], batch["mask"], probability_thresholds)
    if probability_thresholds and exceedance_logit is not None and opts.exceedance_head_csi_weight > 0:
        loss = loss + opts.exceedance_head_csi_weight * head_soft_csi_loss(exceedance_logit, batch["target_rate"], batch["mask"], probability_thresholds)
    if use_lightning and opts.lightning_weight > 0:
        loss = loss + opts.lightning_weight * lightning_loss(light_logit, batch["light"], batch["light_mask"], opts)
    return loss
