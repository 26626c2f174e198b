"""Per-image transform and per-batch augmentation."""

import numpy as np
import torch

from landslide.data.transforms import BatchAugment, build_transform

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _batch(n=64, size=8):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(n, 3, size, size, generator=g)
    return (img - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_transform_resizes_and_normalises():
    arr = np.full((40, 30, 3), 255, np.uint8)
    out = build_transform(16, MEAN, STD)(arr)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert torch.allclose(out[:, 0, 0], (1 - torch.tensor(MEAN)) / torch.tensor(STD), atol=1e-5)


def test_geometric_augmentation_is_per_sample_and_keeps_pixels():
    x = _batch()
    torch.manual_seed(1)
    y = BatchAugment(MEAN, STD, flips=True, rot90=True)(x)
    assert y.shape == x.shape
    changed = [not torch.equal(a, b) for a, b in zip(x, y)]
    assert any(changed) and not all(changed)  # each image draws its own transform
    for a, b in zip(x, y):  # flips and rotations only move pixels
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
    torch.manual_seed(1)
    assert torch.equal(BatchAugment(MEAN, STD)(x), y)  # seeded: reproducible (resume relies on it)


def test_colour_jitter_stays_in_the_valid_range_and_off_is_identity():
    x = _batch()
    assert torch.equal(BatchAugment(MEAN, STD, flips=False, rot90=False)(x), x)
    y = BatchAugment(MEAN, STD, flips=False, rot90=False, color_jitter=0.4, hue=0.1)(x)
    img = y * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    assert img.min() >= -1e-5 and img.max() <= 1 + 1e-5
    assert not torch.allclose(x, y)
