"""Test-time augmentation: average the landslide probability over flipped / rotated views of each image.

Landslide chips have no preferred orientation (nadir imagery), so the dihedral views are equally valid
inputs; averaging them smooths out orientation-specific quirks of a model. ``flips``: the image, its
horizontal and vertical mirror and both (4 views); ``d4``: all 8 rotations and mirrors. Cost: that many
forward passes. Tags, when given, are the same for every view.
"""

from __future__ import annotations

import torch

MODES = ("none", "flips", "d4")
VIEWS = {"none": 1, "flips": 4, "d4": 8}


def views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The batch ``x`` (N, C, H, W) under each transform of ``mode``."""
    if mode not in VIEWS:
        raise ValueError(f"test-time augmentation {mode!r}: choose one of {list(MODES)}")
    if mode == "none":
        return [x]
    if mode == "flips":
        return [x, x.flip(-1), x.flip(-2), x.flip(-1, -2)]
    rotations = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    return rotations + [r.flip(-1) for r in rotations]


def probabilities(model: torch.nn.Module, x: torch.Tensor, tags: torch.Tensor | None = None,
                  mode: str = "none") -> torch.Tensor:
    """Landslide probability per image (N,), averaged over the views of ``mode``."""
    total = None
    batches = views(x, mode)
    for view in batches:
        p = torch.sigmoid(model(view, tags=tags).squeeze(1).float())
        total = p if total is None else total + p
    return total / len(batches)
