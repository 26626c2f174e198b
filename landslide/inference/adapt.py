"""Adaptation to a new region without labels: BatchNorm statistics re-estimated on the target's images (AdaBN).

A network's BatchNorm layers normalise each channel with the mean and variance seen in training. A new sensor
or season shifts those statistics; AdaBN (Li, Wang, Shi, Liu & Hou 2018, "Adaptive batch normalization for
practical domain adaptation", Pattern Recognition 80) replaces them with the target's, computed from its
unlabelled images, and leaves every learned weight as it is. No label is read.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from landslide.errors import DataError


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers (any dimension), in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu",
                    max_images: int | None = None) -> dict:
    """Re-estimate every BatchNorm layer's running mean and variance on the images of ``loader``
    (``collate_skip_bad`` batches; targets, if present, are ignored): the average of the per-batch statistics
    over at most ``max_images`` images (exactly the images' statistics when batches are of equal size). The
    model is left in eval mode. Returns ``{"method", "layers", "images"}``; a model without BatchNorm is
    returned unchanged (``layers`` 0). DataError when no image is readable (the trained statistics are kept)."""
    layers = batchnorm_layers(model)
    model.to(device).eval()
    if not layers:
        return {"method": "adabn", "layers": 0, "images": 0}
    momenta = [m.momentum for m in layers]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # PyTorch's cumulative average: the mean of the per-batch statistics
        m.train()
    seen = 0
    try:
        for batch in loader:
            if batch["image"] is None:
                continue
            images = batch["image"]
            if max_images is not None:
                images = images[: max(0, max_images - seen)]
            if len(images) == 0:
                break
            tags = batch.get("tags")
            model(images.to(device), tags=None if tags is None else tags[: len(images)].to(device))
            seen += len(images)
            if max_images is not None and seen >= max_images:
                break
    finally:
        for m, momentum, state in zip(layers, momenta, saved):
            m.momentum = momentum
            if seen == 0:  # nothing to estimate from: keep the trained statistics
                m.load_state_dict(state)
        model.eval()
    if seen == 0:
        raise DataError("AdaBN: no readable images to re-estimate BatchNorm statistics on")
    return {"method": "adabn", "layers": len(layers), "images": seen}
