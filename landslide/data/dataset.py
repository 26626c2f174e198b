"""A torch Dataset over a manifest. A bad image never stops an epoch: it is dropped from its batch and
reported through the batch's ``errors`` list, which the training engine records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from landslide.data.gsd import centre_window, resample_to_gsd
from landslide.data.images import DEFAULT_MAX_PIXELS, read_image
from landslide.data.manifest import Manifest
from landslide.data.tags import TagSchema, size_targets
from landslide.errors import DataError, ImageError


@dataclass(frozen=True)
class ChipView:
    """How each chip is shown to a model before its own resize to ``input_size`` pixels: as stored (the
    default), or changed by an evaluation intervention, the same way for every comparison of one evaluation
    (with/without TTA, tags or adaptation).

    ``gsd_m``: a chip with a known ``gsd_m`` is resampled to this input GSD (m/px) and fills the model's
    ``input_size`` window (:func:`landslide.data.gsd.resample_to_gsd`); chips without one are read as they are.
    ``square_px``: every chip is shown as the same window of ``square_px`` x ``square_px`` pixels at its own
    resolution (its centre, mirrored at the borders where the chip is smaller:
    :func:`landslide.data.gsd.centre_window`), so that its width, height and aspect ratio, and how much the
    model's resize blurs or sharpens it, are the same for every chip: chip size can no longer carry the label
    (the size confound of Bijie's crops, ``../shared/data/bijie_satellite/SOURCE.md``). Applied after
    ``gsd_m`` when both are set. The window also changes what the model sees (less context, another scale
    than in training), so a score that falls under it is not by itself proof of a size shortcut; the
    size-matched ROC AUC of every evaluation (:func:`landslide.evaluation.confounds.size_matched_auc`) tests
    the same question without changing any image.
    """

    input_size: int
    gsd_m: float | None = None
    square_px: int | None = None

    def __post_init__(self):
        if self.gsd_m is not None and not self.gsd_m > 0:
            raise ValueError(f"ChipView.gsd_m must be positive, got {self.gsd_m}")
        if self.square_px is not None and self.square_px < 1:
            raise ValueError(f"ChipView.square_px must be at least 1, got {self.square_px}")

    @property
    def plain(self) -> bool:
        """True when chips are shown as stored."""
        return self.gsd_m is None and self.square_px is None

    def apply(self, image: np.ndarray, chip_gsd_m: float) -> np.ndarray:
        """uint8 ``(H, W, 3)`` -> the chip as this view shows it; ValueError from a GSD resampling beyond
        :data:`landslide.data.gsd.MAX_RESAMPLING`."""
        if self.gsd_m is not None and chip_gsd_m > 0:
            image = resample_to_gsd(image, chip_gsd_m, self.gsd_m, self.input_size)
        if self.square_px is not None:
            image = centre_window(image, self.square_px)
        return image


class ChipDataset(Dataset):
    """Image chips with binary targets; item = {image, target, index} or {error, index} for a bad image.

    With a tag ``schema`` items also carry ``tags`` (the encoded tags; all unknown with ``without_tags``), and
    with ``size`` = (column, classes) a ``size`` class index (-1 when not a landslide or unknown). A ``view``
    (:class:`ChipView`) changes each chip before ``transform``; a chip it cannot resample is a bad image."""

    def __init__(self, manifest: Manifest, transform: Callable, max_pixels: int = DEFAULT_MAX_PIXELS,
                 schema: TagSchema | None = None, without_tags: bool = False,
                 size: tuple[str, list[str]] | None = None, view: ChipView | None = None):
        self.uris = manifest.frame["uri"].tolist()
        self.view = None if view is None or view.plain else view
        self.chip_gsd = (manifest.frame["gsd_m"].astype(float).tolist()
                         if self.view and self.view.gsd_m and "gsd_m" in manifest.frame
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
            if self.view:
                try:
                    image = self.view.apply(image, self.chip_gsd[index])
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


class SegmentationDataset(Dataset):
    """Chips with their landslide masks, for footprint models: item = {image ``(3, S, S)`` normalised,
    mask ``(1, S, S)`` float 0/1, target, index} or {error, index} for a bad chip or mask.

    Masks come from the manifest's ``mask_path`` column (``mask_uri`` once loaded; non-zero = landslide,
    :func:`landslide.data.masks.read_mask`). A landslide-free chip without a mask gets an all-zero mask (that
    is what "no landslide" means); a landslide chip without one, an unreadable mask or a mask of another size
    than its chip is a bad item naming the file, never a guess. The image is resized to ``size`` x ``size``
    by ``transform`` (uint8 ``(H, W, 3)`` -> normalised ``(3, size, size)``: :func:`build_transform` or a card's
    ``transform()``), the mask to ``size`` x ``size`` by nearest neighbour so it stays 0/1.
    With a tag ``schema`` (a multi-modal classifier's Grad-CAM footprints) items also carry ``tags``.
    Raises DataError when the manifest has no ``mask_path`` column."""

    def __init__(self, manifest: Manifest, transform: Callable, size: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                 schema: TagSchema | None = None):
        if "mask_uri" not in manifest.frame.columns:
            raise DataError(f"{manifest.source}: no mask_path column; footprint models need a landslide mask "
                            "per chip (blank for landslide-free chips)")
        self.uris = manifest.frame["uri"].tolist()
        self.masks = manifest.frame["mask_uri"].tolist()
        self.targets = manifest.frame["target"].astype(int).tolist()
        self.size = size
        self.transform = transform
        self.max_pixels = max_pixels
        self.tags = torch.from_numpy(schema.encode(manifest.frame)) if schema is not None else None

    def __len__(self) -> int:
        return len(self.uris)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        from landslide.data.masks import read_mask

        uri, mask_uri = self.uris[index], self.masks[index]
        try:
            image = read_image(uri, max_pixels=self.max_pixels)
        except ImageError as exc:
            return {"error": {"uri": uri, "reason": exc.reason}, "index": index}
        if not isinstance(mask_uri, str):
            if self.targets[index] == 1:
                return {"error": {"uri": uri, "reason": "landslide chip without a mask (mask_path is blank)"},
                        "index": index}
            mask = np.zeros(image.shape[:2], dtype=bool)
        else:
            try:
                mask = read_mask(mask_uri, self.max_pixels)
            except ImageError as exc:
                return {"error": {"uri": mask_uri, "reason": f"mask: {exc.reason}"}, "index": index}
            if mask.shape != image.shape[:2]:
                return {"error": {"uri": mask_uri, "reason": f"mask is {mask.shape[1]}x{mask.shape[0]} px, its chip "
                                                             f"{image.shape[1]}x{image.shape[0]}"}, "index": index}
        resized = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((self.size, self.size),
                                                                               Image.NEAREST)) > 127
        item = {"image": self.transform(image), "mask": torch.from_numpy(resized[None].astype(np.float32)),
                "target": torch.tensor(float(self.targets[index])), "index": index}
        if self.tags is not None:
            item["tags"] = self.tags[index]
        return item
