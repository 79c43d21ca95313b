"""The training loop: epochs over window batches, validation CSI, early stopping, checkpoints.

One :class:`Trainer` per run. Rank 0 (the only rank in single-process runs) validates on the
whole validation set, writes ``metrics.csv``, ``last.pt`` (every epoch, for ``--resume``) and
``best.pt`` (best validation CSI at ``csi_threshold``, pooled over leads and windows); the
decision to stop is broadcast to the other ranks.

Reproducibility: the epoch's sample order and every sample's crop/augmentation derive from
``(seed, epoch)``, so single-process and DDP runs see the same global batches, and a resumed
run continues exactly where an uninterrupted one would be.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from nowcast.models.calibration import (
    ExceedanceHistogram,
    GuideConditionedHistogram,
    ThresholdCalibration,
    nearest_class,
)
from nowcast.models.lightning_calibration import LightningCalibration, LightningHistogram
from nowcast.models.network import EncoderForecaster, ModelConfig
from nowcast.transforms import rainrate_to_scaled, scaled_to_rainrate
from training import ddp
from training.checkpoint import build_network, load_for_resume, read_checkpoint, save_checkpoint
from training.config import TrainOptions
from training.dataset import WindowDataset
from training.losses import total_loss

log = logging.getLogger(__name__)

#: columns of metrics.csv, in order; ``extrap_csi_*`` is the CSI of the residual base (the first
#: guide source: LK extrapolation or S-PROG), named when only LK existed
METRIC_COLUMNS = [
    "epoch", "train_loss", "val_loss", "val_csi_1", "val_csi_5", "val_csi_thr", "extrap_csi_1", "extrap_csi_5",
    "val_csi_1_lead30", "val_csi_1_lead60", "lr", "seconds", "improved",
]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:  # spawn workers: seed from torch's per-worker seed
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


class EpochSampler(Sampler[int]):
    """Per-epoch permutation of the windows (``samples`` draws, repeating if needed), sharded
    over ranks like ``DistributedSampler`` (rank r takes positions r, r+W, ...)."""

    def __init__(self, n: int, samples: int | None, rank: int, world: int, seed: int) -> None:
        self.n, self.rank, self.world, self.seed = n, rank, world, seed
        total = samples or n
        self.total = int(math.ceil(total / world) * world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        g = torch.Generator()
        g.manual_seed(self.seed * 100003 + self.epoch)
        out: list[int] = []
        while len(out) < self.total:
            out.extend(torch.randperm(self.n, generator=g).tolist())
        return out[: self.total]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.rank :: self.world])

    def __len__(self) -> int:
        return self.total // self.world


def init_lightning_bias(net: EncoderForecaster, prior: float) -> None:
    """Set the lightning logit's bias (channel 1 of the network's last 1x1 convolution) to
    ``logit(prior)``, so a rare event starts at a small probability instead of 0.5."""
    last = net.head[-1]
    if not isinstance(last, torch.nn.Conv2d) or last.out_channels < 2:
        raise TypeError(f"unexpected output layer of the network: {last!r}")
    with torch.no_grad():
        last.bias[1].fill_(math.log(prior / (1.0 - prior)))


def lightning_validation_scores(hist: LightningHistogram, calibration: LightningCalibration) -> dict[str, float]:
    """Brier score of the raw and of the calibrated lightning probability on the validation
    windows (in-sample for the calibration: a sanity check, not a skill estimate)."""
    n = hist.positive + hist.negative
    mean_raw = np.where(n > 0, hist.sum_prob / np.maximum(n, 1), 0.0)
    cal = np.stack([np.interp(mean_raw[k], calibration.x[k], calibration.y[k]) for k in range(hist.n_leads)])  # each lead its own map
    total = max(int(n.sum()), 1)
    events = hist.positive.sum()
    base = events / total
    # bins approximated by their mean raw probability (fine bins: the error is small)
    brier_raw = float(((hist.positive * (1 - mean_raw) ** 2) + hist.negative * mean_raw**2).sum() / total)
    brier_cal = float(((hist.positive * (1 - cal) ** 2) + hist.negative * cal**2).sum() / total)
    return {"val_lightning_base_rate": float(base), "val_lightning_brier_raw": brier_raw, "val_lightning_brier": brier_cal}


class AllOutputs(torch.nn.Module):
    """The network with ``forward`` = ``forward_all`` (so DDP wraps the call the loss needs)."""

    def __init__(self, net: EncoderForecaster) -> None:
        super().__init__()
        self.net = net

    def forward(self, inputs: torch.Tensor, guide: torch.Tensor | None, cell_size_m: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(self.net.forward_all(inputs, guide, cell_size_m))  # type: ignore[return-value]


class Trainer:
    """Trains an :class:`EncoderForecaster` on window datasets; see the module docstring."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        opts: TrainOptions,
        train_ds: WindowDataset,
        val_ds: WindowDataset,
        *,
        ctx: ddp.DistContext,
        out_dir: Path,
        seed: int,
        meta: dict[str, Any],
    ) -> None:
        if opts.batch_size % ctx.world_size:
            raise ValueError(f"batch_size {opts.batch_size} must be divisible by the number of ranks {ctx.world_size}")
        self.cfg, self.opts, self.ctx = model_cfg, opts, ctx
        #: the residual base the log compares with (its CSI is the ``extrap_csi_*`` columns)
        self._base_name = model_cfg.guide_sources[0] if model_cfg.advection != "none" else "none"
        self.train_ds, self.val_ds = train_ds, val_ds
        self.out_dir, self.seed, self.meta = out_dir, seed, meta
        self.device = torch.device(ctx.device)
        self.cuda = self.device.type == "cuda"
        self.amp = opts.amp and self.cuda
        seed_everything(seed)
        net = EncoderForecaster(model_cfg)
        if opts.init_checkpoint:
            net = build_network(read_checkpoint(opts.init_checkpoint), opts.init_checkpoint, expected=model_cfg)
            log.info("initialised from %s", opts.init_checkpoint)
        if opts.lightning_prior is not None and model_cfg.lightning and not opts.init_checkpoint:
            init_lightning_bias(net, opts.lightning_prior)
        self.net = net.to(self.device)
        self.eval_model = AllOutputs(self.net)  # validation: no DDP wrapper, all outputs
        self.model: torch.nn.Module = self.eval_model
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.cuda else None)
        # the few parameters of the exceedance prior (mixture logits, indicator slopes) learn
        # with a larger step: they are a handful of numbers that the whole data set informs
        prior = [p for n, p in self.net.named_parameters() if n in ("prior_logits", "prob_scale")]
        rest = [p for n, p in self.net.named_parameters() if n not in ("prior_logits", "prob_scale")]
        if opts.prior_only:  # check_compatible has checked the model (zero-initialised correction, prior)
            for p in rest:  # the network stays at its zero correction: the forecast is the prior's
                p.requires_grad_(False)
            rest = []
        groups = ([{"params": rest}] if rest else []) + ([{"params": prior, "lr": opts.lr * opts.prior_lr_multiplier, "weight_decay": 0.0}] if prior else [])
        self.optimizer = torch.optim.AdamW(groups, lr=opts.lr, weight_decay=opts.weight_decay)
        self.sampler = EpochSampler(len(train_ds), opts.samples_per_epoch, ctx.rank, ctx.world_size, seed)
        self.history: list[dict[str, Any]] = []
        self.state = {"epoch": 0, "best_score": -1.0, "best_epoch": 0, "bad_epochs": 0}
        #: probability cuts fitted on the latest validation (models with exceedance heads)
        self.calibration: ThresholdCalibration | None = None
        #: isotonic lightning calibration per lead fitted on the latest validation (lightning models)
        self.lightning_calibration: LightningCalibration | None = None
        #: per lead: CSI-optimal cut of the calibrated lightning probability on validation, and its CSI
        self.lightning_csi_cuts: dict[str, list] | None = None

    # -- data --------------------------------------------------------------------------
    def _loader(self, ds: WindowDataset, sampler: Sampler[int] | None) -> DataLoader:
        nw = self.opts.num_workers
        return DataLoader(
            ds,
            batch_size=self.opts.batch_size // self.ctx.world_size,
            sampler=sampler,
            shuffle=False,
            num_workers=nw,
            multiprocessing_context="spawn" if nw > 0 else None,
            worker_init_fn=_worker_init if nw > 0 else None,
            pin_memory=self.cuda,
            drop_last=False,
        )

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rain, lightning logit, exceedance logits (B, K, T, H, W), T = 0 without heads)."""
        guide = batch["guide"] if self.cfg.advection != "none" else None
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            rain, light, exceed = model(batch["inputs"], guide, batch.get("cell_size_m"))
        return rain.float(), light.float(), exceed.float()

    # -- one epoch ---------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        self.sampler.set_epoch(epoch)
        self.train_ds.set_epoch(epoch)
        total, count = 0.0, 0
        bar = tqdm(self._loader(self.train_ds, self.sampler), desc=f"epoch {epoch}", leave=False, disable=not (self.opts.progress and self.ctx.is_main))
        for batch in bar:
            batch = self._to_device(batch)
            rain, light, exceed = self._forward(self.model, batch)
            loss = total_loss(rain, light, batch, self.opts, self.cfg.lightning, exceed, self.cfg.probability_thresholds)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch}: {loss.item()}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.opts.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.opts.grad_clip)
            self.optimizer.step()
            total += float(loss.item())
            count += 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        return ddp.all_reduce_mean(total / max(count, 1), self.ctx)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation loss and CSI (pooled contingency tables over leads and windows)."""
        self.net.eval()
        thresholds = sorted({1.0, 5.0, self.opts.csi_threshold})
        tables = {t: np.zeros(3) for t in thresholds}  # hits, misses, false alarms
        ext = {t: np.zeros(3) for t in (1.0, 5.0)}
        by_lead = np.zeros((self.cfg.n_leads, 3))
        loss_sum, n_batches = 0.0, 0
        heads = tuple(self.cfg.probability_thresholds)
        conditioned = self.opts.cut_condition == "residual_guide"  # checked by parse_options
        classes_m = list(self.opts.class_cuts_m)

        def new_hist() -> ExceedanceHistogram | GuideConditionedHistogram:
            return GuideConditionedHistogram(heads, self.cfg.n_leads) if conditioned else ExceedanceHistogram(heads, self.cfg.n_leads)

        # one histogram per resolution class (index) and one for the grids of no class (None)
        hists = {c: new_hist() for c in [*range(len(classes_m)), None]} if heads else {}
        light_hist = LightningHistogram(self.cfg.n_leads) if self.cfg.lightning else None

        def table(pred_s: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor, thr: float) -> np.ndarray:
            f = pred_s >= float(rainrate_to_scaled(thr))
            o = obs >= thr
            m = mask
            dims = (0, 2, 3)
            return np.stack([((f & o & m).sum(dims)).cpu().numpy(), ((~f & o & m).sum(dims)).cpu().numpy(), ((f & ~o & m).sum(dims)).cpu().numpy()], axis=-1).astype(np.float64)

        for batch in self._loader(self.val_ds, None):
            batch = self._to_device(batch)
            rain, light, exceed = self._forward(self.eval_model, batch)
            loss_sum += float(total_loss(rain, light, batch, self.opts, self.cfg.lightning, exceed, heads).item())
            n_batches += 1
            if hists:
                self._accumulate_cuts(hists, classes_m, batch, torch.sigmoid(exceed).cpu().numpy(), conditioned)
            if light_hist is not None:
                light_hist.accumulate(torch.sigmoid(light).cpu().numpy(), batch["light"].cpu().numpy(), batch["light_mask"].cpu().numpy())
            for t in thresholds:
                tab = table(rain, batch["target_rate"], batch["mask"], t)
                tables[t] += tab.sum(0)
                if t == 1.0:
                    by_lead += tab
            if self.cfg.advection != "none":
                for t in ext:
                    ext[t] += table(batch["guide"][:, :, 0], batch["target_rate"], batch["mask"], t).sum(0)
        self.net.train()

        def csi(h: np.ndarray) -> float:
            d = h[..., 0] + h[..., 1] + h[..., 2]
            return float(h[..., 0] / d) if d > 0 else float("nan")

        out = {
            "val_loss": loss_sum / max(n_batches, 1),
            "val_csi_1": csi(tables[1.0]),
            "val_csi_5": csi(tables[5.0]),
            "val_csi_thr": csi(tables[self.opts.csi_threshold]),
            "extrap_csi_1": csi(ext[1.0]) if self.cfg.advection != "none" else float("nan"),
            "extrap_csi_5": csi(ext[5.0]) if self.cfg.advection != "none" else float("nan"),
        }
        if hists:
            # the deterministic field is cut at the CSI-optimal probability per lead and
            # threshold (chosen here, on validation data); its scores are those of the cuts
            self.calibration, counts = self._fit_cuts(hists, classes_m, heads)  # counts (K, T, 3)
            for t, key in ((1.0, "val_csi_1"), (5.0, "val_csi_5"), (self.opts.csi_threshold, "val_csi_thr")):
                if t in heads:
                    j = heads.index(t)
                    out[key] = csi(counts[:, j].sum(0))
                    if t == 1.0:
                        by_lead = counts[:, j]
        if light_hist is not None:
            # lightning probability of >= 1 stroke per cell and interval: isotonic per lead, on validation data
            self.lightning_calibration = light_hist.fit()
            out.update(lightning_validation_scores(light_hist, self.lightning_calibration))
            cuts, best = light_hist.csi_cuts(self.lightning_calibration)
            self.lightning_csi_cuts = {"cut": cuts.tolist(), "csi": [None if not np.isfinite(v) else float(v) for v in best]}
            k30 = 30 // self.cfg.cadence_minutes - 1
            if 30 % self.cfg.cadence_minutes == 0 and 0 <= k30 < self.cfg.n_leads:
                out["val_lightning_csi_lead30"] = float(best[k30]) if np.isfinite(best[k30]) else float("nan")
                out["val_lightning_cut_lead30"] = float(cuts[k30])
        step = self.cfg.cadence_minutes
        for minutes in (30, 60):
            k = minutes // step - 1
            out[f"val_csi_1_lead{minutes}"] = csi(by_lead[k]) if minutes % step == 0 and 0 <= k < self.cfg.n_leads else float("nan")
        return out

    @staticmethod
    def _accumulate_cuts(hists: dict[int | None, Any], classes_m: list[float], batch: dict[str, torch.Tensor], prob: np.ndarray, conditioned: bool) -> None:
        """Add a validation batch (prob (B, K, T, h, w)) to the histogram of each item's class."""
        target = batch["target_rate"].cpu().numpy()
        mask = batch["mask"].cpu().numpy()
        guide = scaled_to_rainrate(batch["guide"][:, :, 0].float().cpu().numpy()) if conditioned else None  # the residual base, mm/h
        labels = [nearest_class(float(c), classes_m) for c in batch["cell_size_m"].cpu().numpy()] if classes_m else [None] * len(target)
        for c in dict.fromkeys(labels):
            sel = np.array([lab == c for lab in labels])
            if conditioned:
                hists[c].accumulate(prob[sel], target[sel], guide[sel], mask[sel])
            else:
                hists[c].accumulate(prob[sel], target[sel], mask[sel])

    @staticmethod
    def _fit_cuts(hists: dict[int | None, Any], classes_m: list[float], heads: tuple[float, ...]) -> tuple[ThresholdCalibration, np.ndarray]:
        """Pooled cuts (every validation window) and each resolution class's own cuts (when it
        has validation windows); returns the calibration and the (K, T, 3) counts of its cuts."""
        pooled = copy.deepcopy(hists[None])
        for c in range(len(classes_m)):
            pooled.merge(hists[c])
        cuts = pooled.optimal_cuts()
        counts = hists[None].counts_at(cuts)
        classes = []
        for c, size in enumerate(classes_m):
            h = hists[c]
            if h.positive.sum() == 0:
                log.warning("no wet validation window on grids of about %g m: they use the pooled probability cuts", size)
                counts = counts + h.counts_at(cuts)
                continue
            own = h.optimal_cuts()
            classes.append((float(size), own))
            counts = counts + h.counts_at(own)
        return ThresholdCalibration(heads, cuts, tuple(classes)), counts

    # -- checkpoints -------------------------------------------------------------------
    def _payload(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "model_config": self.cfg.model_dump(),
            "train_config": self.opts.model_dump(),
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "trainer": dict(self.state),
            "history": list(self.history),
            "metrics": dict(metrics),
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
            "lightning_calibration": (
                {**self.lightning_calibration.to_dict(), "validation_csi_cuts": self.lightning_csi_cuts} if self.lightning_calibration is not None else None
            ),
            "seed": self.seed,
            **self.meta,
        }

    def _write_csv(self) -> None:
        path = self.out_dir / "metrics.csv"
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for row in self.history:
                w.writerow(row)

    def resume(self, path: str | Path) -> None:
        """Continue from ``path`` (a ``last.pt``): weights, optimiser, early-stopping state, history."""
        ckpt = load_for_resume(path, self.cfg, self.meta["windows_hash"])
        self.net.load_state_dict(ckpt["network"].state_dict())
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.state.update({k: ckpt["trainer"][k] for k in self.state})
        self.history = list(ckpt.get("history", []))
        best = self.out_dir / "best.pt"
        src_best = Path(path).resolve().parent / "best.pt"
        if not best.exists() and src_best.is_file() and self.ctx.is_main:
            shutil.copyfile(src_best, best)
        log.info("resumed from %s at epoch %d (best CSI %.4f at epoch %d)", path, self.state["epoch"], self.state["best_score"], self.state["best_epoch"])

    # -- the run -----------------------------------------------------------------------
    def run(self, resume: str | Path | None = None) -> Path:
        """Train until ``epochs`` or early stopping; returns the path of ``best.pt``."""
        if resume is not None:
            self.resume(resume)
        best_path = self.out_dir / "best.pt"
        stop = self.state["bad_epochs"] >= self.opts.patience
        start = int(self.state["epoch"]) + 1
        for epoch in range(start, self.opts.epochs + 1):
            if stop:
                break
            t0 = time.perf_counter()
            train_loss = self.train_epoch(epoch)
            self.state["epoch"] = epoch
            improved = False
            if self.ctx.is_main:
                metrics = self.validate()
                score = metrics["val_csi_thr"]
                score = -1.0 if math.isnan(score) else score
                improved = score > self.state["best_score"] + self.opts.min_delta or self.state["best_epoch"] == 0
                if improved:
                    self.state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
                else:
                    self.state["bad_epochs"] += 1
                row = {"epoch": epoch, "train_loss": train_loss, **metrics, "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 3), "improved": int(improved)}
                self.history.append(row)
                payload = self._payload(row)
                save_checkpoint(self.out_dir / "last.pt", payload)
                if improved:
                    save_checkpoint(best_path, payload)
                self._write_csv()
                log.info(
                    "epoch %d: train loss %.4f, val loss %.4f, CSI@1 %.4f (guide %s %.4f), CSI@5 %.4f%s",
                    epoch, train_loss, metrics["val_loss"], metrics["val_csi_1"], self._base_name, metrics["extrap_csi_1"], metrics["val_csi_5"], " *" if improved else "",
                )
                stop = self.state["bad_epochs"] >= self.opts.patience
                if stop:
                    log.info("early stopping after epoch %d (best epoch %d, CSI %.4f)", epoch, self.state["best_epoch"], self.state["best_score"])
            stop = ddp.broadcast_flag(stop, self.ctx)
        ddp.barrier(self.ctx)
        return best_path
