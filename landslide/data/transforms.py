"""Image transforms: resize to the backbone's input size, augment for overhead imagery, normalise."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2


class RandomRot90(torch.nn.Module):
    """Rotate by a random multiple of 90 degrees (overhead imagery has no 'up')."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(0, 4, ()).item())
        return torch.rot90(img, k, dims=(-2, -1)) if k else img


def build_transform(image_size: int, mean: tuple[float, float, float], std: tuple[float, float, float],
                    train: bool = False, flips: bool = True, rot90: bool = True,
                    color_jitter: float = 0.0) -> v2.Compose:
    """uint8 HxWx3 array -> normalised float CxHxW tensor, with augmentation when ``train``."""
    steps: list = [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)]
    if train:
        if flips:
            steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
        if rot90:
            steps.append(RandomRot90())
        if color_jitter > 0:
            steps.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter,
                                        saturation=color_jitter, hue=min(color_jitter / 4, 0.5)))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    return v2.Compose(steps)


def denormalize(x: torch.Tensor, mean, std) -> np.ndarray:
    """Normalised CxHxW tensor -> float HxWx3 array in [0, 1] (for overlays)."""
    m = torch.tensor(mean, dtype=x.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(3, 1, 1)
    return (x.detach().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).numpy()
