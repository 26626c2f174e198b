"""A torch Dataset over a manifest. A bad image never stops an epoch: it is dropped from its batch and
reported through the batch's ``errors`` list, which the training engine records."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset, default_collate

from landslide.data.images import DEFAULT_MAX_PIXELS, read_image
from landslide.data.manifest import Manifest
from landslide.data.tags import TagSchema, size_targets
from landslide.errors import ImageError


class ChipDataset(Dataset):
    """Image chips with binary targets; item = {image, target, index} or {error, index} for a bad image.

    With a tag ``schema`` items also carry ``tags`` (the encoded tags; all unknown with ``without_tags``), and
    with ``size`` = (column, classes) a ``size`` class index (-1 when not a landslide or unknown)."""

    def __init__(self, manifest: Manifest, transform: Callable, max_pixels: int = DEFAULT_MAX_PIXELS,
                 schema: TagSchema | None = None, without_tags: bool = False,
                 size: tuple[str, list[str]] | None = None):
        self.uris = manifest.frame["uri"].tolist()
        self.targets = manifest.frame["target"].astype(int).tolist()
        self.transform = transform
        self.max_pixels = max_pixels
        self.tags = None
        if schema is not None:
            encoded = schema.unknown(len(self.uris)) if without_tags else schema.encode(manifest.frame)
            self.tags = torch.from_numpy(encoded)
        self.sizes = torch.from_numpy(size_targets(manifest.frame, *size)) if size else None

    def __len__(self) -> int:
        return len(self.uris)

    def __getitem__(self, index: int) -> dict:
        uri = self.uris[index]
        try:
            image = self.transform(read_image(uri, max_pixels=self.max_pixels))
        except ImageError as exc:
            return {"error": {"uri": uri, "reason": exc.reason}, "index": index}
        item = {"image": image, "target": torch.tensor(float(self.targets[index])), "index": index}
        if self.tags is not None:
            item["tags"] = self.tags[index]
        if self.sizes is not None:
            item["size"] = self.sizes[index]
        return item


def collate_skip_bad(items: list[dict]) -> dict:
    """Collate good items; bad ones go to ``errors``. A batch may end up empty (``image`` is None)."""
    good = [it for it in items if "error" not in it]
    errors = [it["error"] for it in items if "error" in it]
    batch = default_collate(good) if good else {"image": None, "target": None, "index": None}
    batch["errors"] = errors
    return batch
