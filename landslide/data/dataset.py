"""A torch Dataset over a manifest. A bad image never stops an epoch: it is dropped from its batch and
reported through the batch's ``errors`` list, which the training engine records."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset, default_collate

from landslide.data.images import DEFAULT_MAX_PIXELS, read_image
from landslide.data.manifest import Manifest
from landslide.errors import ImageError


class ChipDataset(Dataset):
    """Image chips with binary targets; item = {image, target, index} or {error, index} for a bad image."""

    def __init__(self, manifest: Manifest, transform: Callable, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.uris = manifest.frame["uri"].tolist()
        self.targets = manifest.frame["target"].astype(int).tolist()
        self.transform = transform
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.uris)

    def __getitem__(self, index: int) -> dict:
        uri = self.uris[index]
        try:
            image = self.transform(read_image(uri, max_pixels=self.max_pixels))
        except ImageError as exc:
            return {"error": {"uri": uri, "reason": exc.reason}, "index": index}
        return {"image": image, "target": torch.tensor(float(self.targets[index])), "index": index}


def collate_skip_bad(items: list[dict]) -> dict:
    """Collate good items; bad ones go to ``errors``. A batch may end up empty (``image`` is None)."""
    good = [it for it in items if "error" not in it]
    errors = [it["error"] for it in items if "error" in it]
    batch = default_collate(good) if good else {"image": None, "target": None, "index": None}
    batch["errors"] = errors
    return batch
