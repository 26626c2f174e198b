"""Batch prediction over a data loader: what evaluation and the training engine's validation share."""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from landslide.models.tta import probabilities as tta_probabilities


@torch.no_grad()
def predict_loader(model: nn.Module, loader: DataLoader, device: torch.device,
                   autocast: Callable = contextlib.nullcontext, desc: str = "predict",
                   progress: bool = False, tta: str = "none") -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """(indices, targets, probabilities, errors) over a loader of ``collate_skip_bad`` batches
    (``tta``: probabilities averaged over flipped/rotated views, see landslide.models.tta)."""
    model.eval()
    idx, ys, ps, errors = [], [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        errors.extend(batch["errors"])
        if batch["image"] is None:
            continue
        tags = batch.get("tags")
        tags = None if tags is None else tags.to(device)
        with autocast():
            probs = tta_probabilities(model, batch["image"].to(device), tags, tta)
        ps.append(probs.cpu().numpy())
        ys.append(batch["target"].numpy())
        idx.append(batch["index"].numpy())
    if not ps:
        return np.zeros(0, int), np.zeros(0), np.zeros(0), errors
    return np.concatenate(idx), np.concatenate(ys), np.concatenate(ps), errors
