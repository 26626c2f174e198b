"""Image transforms: per image, resize to the backbone's input size and normalise; per batch, augment.

Augmentation runs on whole batches on the training device (:class:`BatchAugment`), not per image in the
data loader: per-image random transforms cost more CPU time than decoding, and on the device they are a
few vectorised tensor operations. Per-sample randomness is kept (each image gets its own flips, rotation and
jitter factors), drawn from torch's global RNG, which the training engine seeds per epoch.
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


def build_transform(image_size: int, mean: tuple[float, float, float], std: tuple[float, float, float]
                    ) -> v2.Compose:
    """uint8 HxWx3 array -> normalised float CxHxW tensor, for training and evaluation alike (training
    augments per batch, see :class:`BatchAugment`)."""
    return v2.Compose([v2.ToImage(), v2.Resize((image_size, image_size), antialias=True),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))])


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def blur_kernel_size(sigma: float) -> int:
    """Side in pixels of the Gaussian blur kernel for ``sigma`` (3 sigma each side, odd)."""
    return 2 * math.ceil(3 * sigma) + 1


def sensor_shift_pipeline(p: float = 0.5, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3,
                          hue: float = 0.03, gamma: tuple[float, float] = (0.7, 1.5),
                          blur_sigma: tuple[float, float] = (0.3, 1.5), sharpness: float = 1.0,
                          noise_std: float = 0.03, jpeg_quality: tuple[float, float] = (30.0, 95.0),
                          scale: tuple[float, float] = (0.8, 1.25)) -> K.AugmentationSequential:
    """Kornia augmentations that model a change of sensor, processing and season on a ``(B, 3, H, W)`` batch
    in [0, 1]: scale jitter around the training GSD (an affine zoom by a factor in ``scale``, reflected at the
    border), colour (kornia ``ColorJiggle``: brightness, contrast, saturation factors in [1 - s, 1 + s], hue
    shift in [-hue, hue] of a full turn), gamma, Gaussian blur (``blur_sigma`` px) and sharpening (strength
    up to ``sharpness``; each with probability ``p / 2``), Gaussian noise (``noise_std``, in [0, 1] units)
    and JPEG re-compression (quality in ``jpeg_quality``). Each is applied to each image independently with
    probability ``p``.
    The ranges follow what separates UAV orthophotos (~0.1–0.2 m) from pan-sharpened satellite products
    (~0.5–2 m, JPEG-compressed); the defaults are this project's, measured on the region matrix
    (docs/results.md), not from a publication."""
    kernel = blur_kernel_size(blur_sigma[1])
    return K.AugmentationSequential(
        K.RandomAffine(degrees=0.0, scale=scale, padding_mode="reflection", p=p),
        K.ColorJiggle(brightness, contrast, saturation, hue, p=p),
        K.RandomGamma(gamma, p=p),
        K.RandomGaussianBlur((kernel, kernel), blur_sigma, p=p / 2),
        K.RandomSharpness(sharpness, p=p / 2),
        K.RandomGaussianNoise(std=noise_std, p=p),
        K.RandomJPEG(jpeg_quality, p=p),
    )


class BatchAugment(torch.nn.Module):
    """Random flips, 90-degree rotations (overhead imagery has no 'up') and colour jitter for a normalised
    ``(B, 3, H, W)`` batch of square images; optionally the sensor-shift augmentations of
    :func:`sensor_shift_pipeline` (``sensor_shift``: its keyword arguments, or None for none).

    Jitter follows torchvision's ColorJitter definitions (brightness scales, contrast blends with the mean
    grey level, saturation blends with the grey image; factors uniform in [1 - s, 1 + s]) in that fixed
    order, on the de-normalised [0, 1] image. Hue jitter is separate and off by default.
    """

    def __init__(self, mean, std, flips: bool = True, rot90: bool = True, color_jitter: float = 0.0,
                 hue: float = 0.0, sensor_shift: dict | None = None):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.flips, self.rot90, self.color_jitter, self.hue = flips, rot90, color_jitter, hue
        self.sensor = sensor_shift_pipeline(**sensor_shift) if sensor_shift is not None else None

    def _factors(self, n: int, strength: float, device) -> torch.Tensor:
        return (1 + (torch.rand(n) * 2 - 1) * strength).to(device).view(n, 1, 1, 1)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        """``x`` ``(B, 3, H, W)`` -> augmented ``x``; with a ``mask`` ``(B, 1, H, W)`` (0/1) -> ``(x, mask)``,
        the mask moved by exactly the same flips, rotations and scale jitter (nearest-neighbour, so it stays
        0/1) and untouched by every photometric change."""
        n = x.shape[0]
        if self.flips:
            h = (torch.rand(n) < 0.5).to(x.device).view(n, 1, 1, 1)
            x = torch.where(h, x.flip(-1), x)
            v = (torch.rand(n) < 0.5).to(x.device).view(n, 1, 1, 1)
            x = torch.where(v, x.flip(-2), x)
            if mask is not None:
                mask = torch.where(h, mask.flip(-1), mask)
                mask = torch.where(v, mask.flip(-2), mask)
        if self.rot90 and x.shape[-1] == x.shape[-2]:
            k = torch.randint(0, 4, (n,))
            out = x.clone()
            out_mask = mask.clone() if mask is not None else None
            for turns in (1, 2, 3):
                idx = (k == turns).nonzero().flatten().to(x.device)
                if len(idx):
                    out[idx] = torch.rot90(x[idx], turns, dims=(-2, -1))
                    if mask is not None:
                        out_mask[idx] = torch.rot90(mask[idx], turns, dims=(-2, -1))
            x, mask = out, out_mask
        if self.color_jitter > 0 or self.hue > 0 or self.sensor is not None:
            mean, std = self.mean.to(x.dtype), self.std.to(x.dtype)
            img = (x * std + mean).clamp(0, 1)
            if self.color_jitter > 0:
                s = self.color_jitter
                img = (img * self._factors(n, s, x.device)).clamp(0, 1)
                grey_mean = _gray(img).mean(dim=(-3, -2, -1), keepdim=True)
                f = self._factors(n, s, x.device)
                img = (f * img + (1 - f) * grey_mean).clamp(0, 1)
                f = self._factors(n, s, x.device)
                img = (f * img + (1 - f) * _gray(img)).clamp(0, 1)
            if self.hue > 0:
                shifts = ((torch.rand(n) * 2 - 1) * self.hue).tolist()
                img = torch.stack([F.adjust_hue(im, h) for im, h in zip(img, shifts)])
            if self.sensor is not None:
                if mask is None:
                    img = self.sensor(img.float())
                else:
                    img, mask = self.sensor(img.float(), mask.float(), data_keys=["input", "mask"])
                    mask = (mask > 0.5).to(x.dtype)
                img = img.clamp(0, 1).to(x.dtype)
            x = (img - mean) / std
        return x if mask is None else (x, mask)


def denormalize(x: torch.Tensor, mean, std) -> np.ndarray:
    """Normalised CxHxW tensor -> float HxWx3 array in [0, 1] (for overlays)."""
    m = torch.tensor(mean, dtype=x.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(3, 1, 1)
    return (x.detach().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).numpy()
