"""The training engine: one loop for local runs and Ray Train workers alike.

It takes a model and data loaders and knows nothing about where data lives. Per epoch it trains,
validates, steps ReduceLROnPlateau, keeps the best weights by the monitored metric, writes resumable
state, and calls ``callbacks`` (Ray Train reports through one). Bad images are dropped from their batch
and recorded, never fatal.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from landslide.config import TrainConfig
from landslide.errors import CheckpointError, ImageError
from landslide.evaluation.metrics import binary_metrics
from landslide.models.freezing import set_frozen_batchnorm_eval
from landslide.inference.batch import predict_loader
from landslide.inference.device import resolve_device
from landslide.training import state as train_state

EpochCallback = Callable[[int, dict, "Trainer"], None]


def monitor_mode(monitor: str) -> str:
    """``min`` for metrics where lower is better (losses), else ``max``."""
    return "min" if monitor == "val_loss" else "max"


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def _gather_predictions(idx, ys, ps, errors):
    """All ranks' predictions of a sharded loader, each sample once (samplers pad shards with repeats)."""
    parts: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, (idx, ys, ps, errors))
    idx = np.concatenate([p[0] for p in parts])
    ys = np.concatenate([p[1] for p in parts])
    ps = np.concatenate([p[2] for p in parts])
    errors = list({e["uri"]: e for p in parts for e in p[3]}.values())
    idx, first = np.unique(idx, return_index=True)
    return idx, ys[first], ps[first], errors


def describe_epoch(metrics: dict, epochs: int) -> str:
    """One log line per epoch, e.g. ``epoch 3/15: train loss 0.412 acc 0.823 | val loss 0.390 f1 0.851 ...``."""
    parts = [f"epoch {metrics['epoch'] + 1}/{epochs}:",
             f"train loss {metrics.get('train_loss', math.nan):.4f} acc {metrics.get('train_accuracy', math.nan):.3f}"]
    if "val_loss" in metrics:
        if "val_iou" in metrics:  # footprint models: pixel scores
            parts.append(f"| val loss {metrics['val_loss']:.4f} pixel IoU {metrics['val_iou']:.3f} "
                         f"F1 {metrics.get('val_f1', math.nan):.3f}")
        else:
            parts.append(f"| val loss {metrics['val_loss']:.4f} acc {metrics.get('val_accuracy', math.nan):.3f} "
                         f"f1 {metrics.get('val_f1', math.nan):.3f}")
    parts.append(f"| lr {metrics.get('lr', math.nan):.2g}, {metrics.get('train_seconds', 0):.1f} s, "
                 f"{metrics.get('train_images_per_s', 0):.1f} img/s")
    if metrics.get("stopped_early"):
        parts.append("| early stop")
    return " ".join(parts)


@dataclass
class FitResult:
    history: list[dict]
    best_epoch: int
    best_score: float
    best_state: dict[str, torch.Tensor]
    skipped_images: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    resumed_from_epoch: int | None = None


class Trainer:
    """Fits a binary classifier (one logit) with BCE, Adam and ReduceLROnPlateau."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device | None = None,
                 pos_weight: float | None = None, state_dir: str | None = None,
                 callbacks: list[EpochCallback] | None = None, save_state: bool = True,
                 augment: nn.Module | None = None, size_weight: float = 0.5):
        """``state_dir``: resume from and (if ``save_state``) write resumable state there. ``model`` may be
        wrapped in DistributedDataParallel: batches are then per rank, and metrics are reduced over ranks.
        ``augment`` runs on each training batch on the device (see ``landslide.data.transforms``). Batches
        with ``tags`` feed a multi-modal model; a model with a size head also learns the batches' ``size``
        classes (cross-entropy weighted by ``size_weight``, ignoring -1)."""
        self.model = model
        self.save_state = save_state
        self.augment = augment
        self.cfg = cfg
        self.device = device or resolve_device(cfg.device)
        if self.augment is not None:
            self.augment.to(self.device)
        self.model.to(self.device)
        self.state_dir = state_dir
        self.callbacks = callbacks or []
        weight = torch.tensor([pos_weight], device=self.device) if pos_weight else None
        self.segmentation = getattr(self.raw_model(), "task", "classification") == "segmentation"
        if self.segmentation:  # footprints: one logit per pixel against the batch's masks
            from landslide.training.losses import SegmentationLoss

            self.loss_fn = SegmentationLoss(cfg.segmentation_loss).to(self.device)
        else:
            self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters: check model.freeze")
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.minimize = monitor_mode(cfg.monitor) == "min"
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode=monitor_mode(cfg.monitor), factor=cfg.plateau_factor, patience=cfg.plateau_patience)
        use_amp = cfg.amp == "on" or (cfg.amp == "auto" and self.device.type == "cuda")
        self.amp_dtype = None
        if use_amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif use_amp:
            self.amp_dtype = torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.size_weight = size_weight if getattr(self.raw_model(), "size_head", None) is not None else 0.0
        self.size_loss_fn = nn.CrossEntropyLoss(ignore_index=-1, reduction="sum")
        self.skipped: dict[str, str] = {}
        self._spare_input: torch.Tensor | None = None

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _record(self, errors: list[dict]) -> None:
        for err in errors:
            self.skipped.setdefault(err["uri"], err["reason"])

    def train_epoch(self, loader: DataLoader, epoch: int) -> dict:
        """One pass over ``loader``; returns loss, accuracy, throughput."""
        self.model.train()
        set_frozen_batchnorm_eval(self.model)
        total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
        judged = 0  # what accuracy counts: images, or pixels for footprint models
        size_loss_sum, size_seen = 0.0, 0
        limit = self.cfg.max_steps_per_epoch
        bar = tqdm(loader, desc=f"epoch {epoch} train", leave=False, disable=not self.cfg.progress)
        for step, batch in enumerate(bar):
            if limit is not None and step >= limit:
                break
            self._record(batch["errors"])
            empty = batch["image"] is None
            if empty and not _distributed():
                continue
            if empty:
                # every image of this rank's batch was unreadable, but DDP needs every rank in every gradient
                # all-reduce: step on a zero-weighted stand-in batch instead of skipping
                if self._spare_input is None:
                    raise ImageError(batch["errors"][0]["uri"] if batch["errors"] else "<batch>",
                                     "the first batch of this worker had no readable image; cannot stand in "
                                     "for it in distributed training")
                x = self._spare_input
                y = (torch.zeros_like(x[:, :1]) if self.segmentation
                     else torch.zeros(len(self._spare_input), device=self.device))
                tags, size = None, torch.full((len(x),), -1, dtype=torch.long, device=self.device)
            else:
                x = batch["image"].to(self.device, non_blocking=True)
                y = batch["mask" if self.segmentation else "target"].to(self.device, non_blocking=True).float()
                tags = batch.get("tags")
                tags = None if tags is None else tags.to(self.device, non_blocking=True)
                size = batch.get("size")
                size = None if size is None else size.to(self.device, non_blocking=True)
                if self.augment is not None and self.segmentation:
                    x, y = self.augment(x, y)
                elif self.augment is not None:
                    x = self.augment(x)
                self._spare_input = x[:1].detach()
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                if self.segmentation:
                    logits, size_logits = self.model(x), None
                elif self.size_weight:
                    logits, size_logits = self.model(x, tags=tags, with_size=True)
                else:
                    logits, size_logits = self.model(x, tags=tags), None
                if not self.segmentation:
                    logits = logits.squeeze(1)
                loss = self.loss_fn(logits.float(), y)
                landslide_loss = loss.detach()
                if size_logits is not None and size is not None:
                    # a sum over known sizes / their count: zero (graph intact) when a batch has none
                    n_size = int((size >= 0).sum())
                    size_loss = self.size_loss_fn(size_logits.float(), size) / max(n_size, 1)
                    loss = loss + self.size_weight * size_loss
                    size_loss_sum += float(size_loss.detach()) * n_size
                    size_seen += n_size
                if empty:
                    loss = loss * 0.0
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch} step {step}; "
                                         "lower train.lr or check the data")
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            if empty:
                continue
            n = len(x)
            total_loss += landslide_loss.item() * n
            correct += int(((logits.detach() > 0).float() == y).sum().item())
            judged += y.numel()
            seen += n
            bar.set_postfix(loss=f"{total_loss / max(seen, 1):.4f}")
        elapsed = time.perf_counter() - start
        if _distributed():
            sums = torch.tensor([total_loss, correct, seen, size_loss_sum, size_seen, judged], dtype=torch.float64,
                                device=self.device)
            torch.distributed.all_reduce(sums)  # on the training device: NCCL reduces CUDA tensors only
            total_loss, correct, seen = float(sums[0]), int(sums[1]), int(sums[2])
            size_loss_sum, size_seen, judged = float(sums[3]), int(sums[4]), int(sums[5])
        out = {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(judged, 1),
               "train_images": seen, "train_images_per_s": seen / elapsed if elapsed > 0 else 0.0,
               "train_seconds": elapsed}
        if self.size_weight:
            out["train_size_loss"] = size_loss_sum / size_seen if size_seen else math.nan
        return out

    def predict(self, loader: DataLoader, desc: str = "predict") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indices, targets, probabilities) for every good image of ``loader``."""
        # the bare model: DDP's forward would sync buffers and needs equal batch counts on every rank
        idx, ys, ps, errors = predict_loader(self.raw_model(), loader, self.device, self._autocast, desc,
                                             self.cfg.progress)
        if _distributed():
            idx, ys, ps, errors = _gather_predictions(idx, ys, ps, errors)
        self._record(errors)
        return idx, ys, ps

    def validate(self, loader: DataLoader) -> dict:
        """Validation loss and metrics at threshold 0.5 (footprint models: of the pixels)."""
        if self.segmentation:
            return self._validate_pixels(loader)
        _, y, p = self.predict(loader, desc="validate")
        if len(y) == 0:
            return {"val_loss": math.nan}
        eps = 1e-7
        pc = np.clip(p, eps, 1 - eps)
        loss = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
        m = binary_metrics(y, p, 0.5)
        return {"val_loss": loss, "val_accuracy": m["accuracy"], "val_f1": m["f1"], "val_auc": m["roc_auc"],
                "val_images": int(len(y))}

    @torch.no_grad()
    def _validate_pixels(self, loader: DataLoader) -> dict:
        """Footprint models: the loss, pixel IoU and F1 (Dice) at probability 0.5 over the whole split. With
        several ranks, per-chip pixel counts are gathered and each chip counted once (a DistributedSampler
        pads ranks with repeated chips); the loss is the mean over ranks' batches."""
        model = self.raw_model()
        model.eval()
        loss_sum, n = 0.0, 0
        chips: dict[int, tuple[int, int, int]] = {}  # index -> (tp, fp, fn)
        for batch in tqdm(loader, desc="validate", leave=False, disable=not self.cfg.progress):
            self._record(batch["errors"])
            if batch["image"] is None:
                continue
            x = batch["image"].to(self.device, non_blocking=True)
            y = batch["mask"].to(self.device, non_blocking=True).float()
            with self._autocast():
                logits = model(x).float()
            loss_sum += float(self.loss_fn(logits, y)) * len(x)
            n += len(x)
            pred, truth = logits > 0, y > 0.5
            counts = torch.stack([(pred & truth).sum((1, 2, 3)), (pred & ~truth).sum((1, 2, 3)),
                                  (~pred & truth).sum((1, 2, 3))], 1).cpu().tolist()
            chips.update({int(i): tuple(c) for i, c in zip(batch["index"].tolist(), counts)})
        if _distributed():
            sums = torch.tensor([loss_sum, n], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(sums)
            loss_sum, n = float(sums[0]), int(sums[1])
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, chips)
            chips = {k: v for part in gathered for k, v in part.items()}
        if not n:
            return {"val_loss": math.nan}
        tp, fp, fn = (sum(c[j] for c in chips.values()) for j in range(3))
        return {"val_loss": loss_sum / n, "val_iou": tp / (tp + fp + fn) if tp + fp + fn else math.nan,
                "val_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan, "val_images": len(chips)}

    def score(self, metrics: dict) -> float:
        """The monitored metric of an epoch; the worst possible value when it is missing."""
        value = metrics.get(self.cfg.monitor, math.nan)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.inf if self.minimize else -math.inf
        return float(value)

    def _better(self, score: float, best: float) -> bool:
        return score < best if self.minimize else score > best

    def raw_model(self) -> nn.Module:
        """The model without its DistributedDataParallel wrapper."""
        return self.model.module if hasattr(self.model, "module") else self.model

    def fit(self, train_loader: DataLoader, val_loader: DataLoader | None,
            set_epoch: Callable[[int], None] | None = None) -> FitResult:
        """Train for ``cfg.epochs`` (resuming from ``state_dir`` when it holds state)."""
        cfg = self.cfg
        history: list[dict] = []
        best_score = math.inf if self.minimize else -math.inf
        best_epoch, bad_epochs, start_epoch, resumed = -1, 0, 0, None
        raw = self.raw_model()
        best_state = {k: v.detach().cpu().clone() for k, v in raw.state_dict().items()}
        if self.state_dir:
            loaded = train_state.load_state(self.state_dir)
            if loaded is not None:
                model_state, opt_state, extra = loaded
                try:
                    raw.load_state_dict(model_state)
                    self.optimizer.load_state_dict(opt_state)
                except (RuntimeError, ValueError, KeyError) as exc:
                    raise CheckpointError(
                        f"{self.state_dir}: its train_state belongs to a different model or freezing setup "
                        f"({str(exc).splitlines()[0][:160]}); use a new output_dir or delete its train_state/"
                    ) from None
                self.scheduler.load_state_dict(extra["scheduler"])
                history = extra["history"]
                best_score, best_epoch, bad_epochs = extra["best_score"], extra["best_epoch"], extra["bad_epochs"]
                self.skipped.update(extra.get("skipped", {}))
                start_epoch = resumed = extra["epoch"] + 1
                best_uri_state = train_state.load_best(self.state_dir)
                if best_uri_state is not None:
                    best_state = best_uri_state
        stopped_early = bool(history and history[-1].get("stopped_early"))
        for epoch in range(start_epoch, cfg.epochs):
            if stopped_early:
                break
            # seed per epoch (global RNG for augmentation/dropout, loader generator for shuffling), so a
            # resumed run sees exactly the batches an uninterrupted one would have
            torch.manual_seed(cfg.seed + epoch)
            if getattr(train_loader, "generator", None) is not None:
                train_loader.generator.manual_seed(cfg.seed + epoch)
            if set_epoch is not None:
                set_epoch(epoch)
            metrics = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
            metrics.update(self.train_epoch(train_loader, epoch))
            if val_loader is not None:
                metrics.update(self.validate(val_loader))
            score = self.score(metrics)
            self.scheduler.step(score)
            if self._better(score, best_score) or best_epoch < 0:
                best_score, best_epoch, bad_epochs = score, epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in raw.state_dict().items()}
                if self.state_dir and self.save_state:
                    train_state.save_best(self.state_dir, best_state, epoch)
            else:
                bad_epochs += 1
            metrics["skipped_images_total"] = len(self.skipped)
            if cfg.early_stopping_patience is not None and bad_epochs >= cfg.early_stopping_patience:
                stopped_early = True
                metrics["stopped_early"] = True
            history.append(metrics)
            if self.state_dir and self.save_state:
                train_state.save_state(self.state_dir, raw.state_dict(), self.optimizer.state_dict(), {
                    "epoch": epoch, "history": history, "scheduler": self.scheduler.state_dict(),
                    "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                    "skipped": self.skipped})
            for callback in self.callbacks:
                callback(epoch, metrics, self)
        return FitResult(history=history, best_epoch=best_epoch, best_score=best_score, best_state=best_state,
                         skipped_images=[{"uri": u, "reason": r} for u, r in self.skipped.items()],
                         stopped_early=stopped_early, resumed_from_epoch=resumed)
