"""Losses for footprint (segmentation) models, from segmentation-models-pytorch.

``dice_bce`` (default): soft Dice (Milletari et al. 2016) plus binary cross-entropy, the usual pairing for
landslide masks, where landslide pixels are a minority: Dice weighs the overlap of the few positive pixels,
BCE keeps every pixel's gradient (Dice alone is unstable on chips without landslide). ``focal_dice``: focal
loss (Lin et al. 2017, gamma 2) in place of BCE, for heavier imbalance. ``bce``: cross-entropy alone.
"""

from __future__ import annotations

import torch
from torch import nn

from landslide.config import SegmentationLossName



class SegmentationLoss(nn.Module):
    """``forward(logits, mask)``: ``(B, 1, H, W)`` logits and 0/1 masks -> scalar loss (mean over the batch)."""

    def __init__(self, name: SegmentationLossName = "dice_bce"):
        super().__init__()
        from segmentation_models_pytorch import losses

        if name not in ("dice_bce", "focal_dice", "bce"):
            raise ValueError(f"unknown segmentation loss {name!r}: choose dice_bce, focal_dice or bce")
        self.name = name
        self.dice = losses.DiceLoss(mode="binary", from_logits=True) if name != "bce" else None
        self.pixel = losses.FocalLoss(mode="binary") if name == "focal_dice" else nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(logits.dtype)
        loss = self.pixel(logits, mask)
        if self.dice is not None:
            loss = loss + self.dice(logits, mask)
        return loss
