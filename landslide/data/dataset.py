"""A torch Dataset over a manifest. A bad image never stops an epoch: it is dropped from its batch and
reported through the batch's ``errors`` list, which the training engine records."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset, default_collate

from landslide.data.gsd import resample_to_gsd
from landslide.data.images import DEFAULT_MAX_PIXELS, read_image
from landslide.data.manifest import Manifest
from landslide.data.tags import TagSchema, size_targets
from landslide.errors import ImageError


class ChipDataset(Dataset):
    """Image chips with binary targets; item = {image, target, index} or {error, index} for a bad image.

    With a tag ``schema`` items also carry ``tags`` (the encoded tags; all unknown with ``without_tags``), and
    with ``size`` = (column, classes) a ``size`` class index (-1 when not a landslide or unknown). With
    ``gsd`` = (target m/px, input size) a chip whose ``gsd_m`` is known is first resampled to that GSD
    (:func:`landslide.data.gsd.resample_to_gsd`); chips without one are read as they are."""

    def __init__(self, manifest: Manifest, transform: Callable, max_pixels: int = DEFAULT_MAX_PIXELS,
                 schema: TagSchema | None = None, without_tags: bool = False,
                 size: tuple[str, list[str]] | None = None, gsd: tuple[float, int] | None = None):
        self.uris = manifest.frame["uri"].tolist()
        self.gsd = gsd
        self.chip_gsd = (manifest.frame["gsd_m"].astype(float).tolist() if gsd and "gsd_m" in manifest.frame
                         else [float("nan")] * len(self.uris))
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
            image = read_image(uri, max_pixels=self.max_pixels)
            if self.gsd and self.chip_gsd[index] > 0:
                try:
                    image = resample_to_gsd(image, self.chip_gsd[index], *self.gsd)
                except ValueError as exc:
                    return {"error": {"uri": uri, "reason": f"gsd_m: {exc}"}, "index": index}
            image = self.transform(image)
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
