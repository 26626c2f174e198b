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


def test_sensor_shift_changes_every_image_within_range_reproducibly():
    from landslide.config import SensorShiftConfig

    x = _batch(n=16, size=32)
    options = SensorShiftConfig(p=1.0).model_dump()
    aug = BatchAugment(MEAN, STD, flips=False, rot90=False, sensor_shift=options)
    torch.manual_seed(3)
    y = aug(x)
    img = y * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    assert y.shape == x.shape and img.min() >= -1e-5 and img.max() <= 1 + 1e-5
    assert all(not torch.allclose(a, b) for a, b in zip(x, y))
    # each image draws its own parameters: no two outputs differ from their inputs by the same amount
    shifts = (y - x).abs().mean(dim=(1, 2, 3))
    assert len(set(shifts.round(decimals=5).tolist())) == len(shifts)
    torch.manual_seed(3)
    assert torch.equal(aug(x), y)  # seeded: reproducible (resume relies on it)
    # off (p = 0) is the identity; odd sizes and a single image work
    off = BatchAugment(MEAN, STD, flips=False, rot90=False, sensor_shift=SensorShiftConfig(p=0).model_dump())
    assert torch.allclose(off(x), x, atol=1e-5)
    assert aug(_batch(n=1, size=37)).shape == (1, 3, 37, 37)


def test_sensor_shift_blur_removes_fine_detail():
    from landslide.config import SensorShiftConfig

    x = _batch(n=8, size=32)  # white noise: all fine detail
    only_blur = SensorShiftConfig(p=1.0, brightness=0, contrast=0, saturation=0, hue=0, gamma=(1, 1),
                                  sharpness=0, noise_std=0, jpeg_quality=(100, 100), scale=(1, 1),
                                  blur_sigma=(1.5, 1.5)).model_dump()
    torch.manual_seed(0)
    y = BatchAugment(MEAN, STD, flips=False, rot90=False, sensor_shift=only_blur)(x)
    detail = y.diff(dim=-1).abs().mean(dim=(1, 2, 3)) / x.diff(dim=-1).abs().mean(dim=(1, 2, 3))
    # blur has probability p / 2 per image (JPEG at quality 100 alone keeps ~2/3 of white noise)
    assert (detail < 0.35).any() and (detail > 0.6).any()


def test_sensor_shift_config_names_bad_ranges():
    import pytest

    from landslide.config import parse_config
    from landslide.errors import ConfigError

    base = {"data": {"train": "x.csv"}, "train": {"augment": {"sensor_shift": {}}}}
    assert parse_config(base).train.augment.sensor_shift.p == 0.5
    with pytest.raises(ConfigError, match=r"train.augment.sensor_shift.scale.*0 < low <= high"):
        parse_config({**base, "train": {"augment": {"sensor_shift": {"scale": [1.2, 0.8]}}}})
    for bad in ([50, 120], [0.5, 1]):
        with pytest.raises(ConfigError, match=r"jpeg_quality is a range within \[1, 100\]"):
            parse_config({**base, "train": {"augment": {"sensor_shift": {"jpeg_quality": bad}}}})
    with pytest.raises(ConfigError, match=r"scale must be a finite range"):
        parse_config({**base, "train": {"augment": {"sensor_shift": {"scale": [1.0, float("inf")]}}}})
