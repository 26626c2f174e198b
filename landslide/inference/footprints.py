"""Footprints of uploaded images with a footprint (segmentation) model: the endpoint's ``/v1/segment``.

Like :class:`landslide.inference.predictor.Predictor` for chip classifiers, the work is split so that only
small arrays cross process boundaries: :meth:`FootprintPredictor.prepare` resizes an image to the model's
input size as uint8 (where it is decoded), :meth:`FootprintPredictor.footprints` predicts, brings the
probabilities back to the image's own size and traces the footprints (where the model is).

An upload is scored as one chip, resized to the model's input size, exactly as the training chips were; a
scene much larger than the training chips belongs to a sweep, which keeps the training scale.
"""

from __future__ import annotations

import math

import numpy as np
from shapely import affinity
import torch
import torch.nn.functional as F

from landslide.data.images import encode_png
from landslide.evaluation.segmentation import components
from landslide.inference.device import resolve_device
from landslide.inference.predictor import prepare_image
from landslide.inventory.footprints import trace, vectorize
from landslide.models.checkpoint import load_checkpoint


class FootprintPredictor:
    """Pixel landslide probabilities and footprints with the footprint model in ``model_uri``; the pixel
    threshold is the card's (chosen on validation masks) unless ``threshold`` is given."""

    def __init__(self, model_uri: str, device: str = "auto", threshold: float | None = None,
                 num_threads: int | None = None):
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = resolve_device(device)
        self.model, self.card = load_checkpoint(model_uri, self.device, task="segmentation")
        self.input_size = self.card.input_size
        self.threshold = float(self.card.threshold if threshold is None else threshold)
        self.min_object_px = self.card.min_object_px
        """Footprints smaller than this (pixels at the input size; chosen on validation masks) are dropped."""
        self._mean = torch.tensor(self.card.normalization.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.card.normalization.std, device=self.device).view(1, 3, 1, 1)

    @property
    def info(self) -> dict:
        """Model identity recorded with every answer."""
        return {"name": self.card.name, "backbone": self.card.backbone, "architecture": self.card.architecture,
                "version": self.card.version, "input_size": self.input_size, "threshold": self.threshold,
                "min_object_px": self.min_object_px, "task": self.card.task}

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 ``(H, W, 3)`` -> uint8 ``(S, S, 3)`` at the model's input size."""
        return prepare_image(image, self.input_size)

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Landslide probability per pixel, float32 ``(B, S, S)``, for a ``(B, S, S, 3)`` uint8 batch of prepared
        images (another size is prepared first)."""
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"expected a (B, H, W, 3) batch of RGB uint8 images, got shape {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, self.input_size, self.input_size), np.float32)
        if batch.shape[1:3] != (self.input_size, self.input_size):
            batch = np.stack([self.prepare(image) for image in batch])
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        return torch.sigmoid(self.model((x - self._mean) / self._std).float())[:, 0].cpu().numpy()

    def probability_at(self, prepared: np.ndarray, height: int, width: int) -> np.ndarray:
        """The probabilities of one prepared ``(S, S, 3)`` image at the image's own ``height`` x ``width``
        (bilinear, pixel centres aligned as in the resize that prepared it): float32 ``(height, width)``."""
        prob = torch.from_numpy(self.predict(prepared[None]))[None]
        if prob.shape[-2:] != (height, width):
            prob = F.interpolate(prob, size=(height, width), mode="bilinear", align_corners=False)
        return prob[0, 0].numpy()

    def footprints(self, prepared: np.ndarray, height: int, width: int, gsd_m: float | None = None,
                   transform=None, crs=None, simplify_m: float = 0.0, min_area_m2: float = 0.0,
                   max_footprints: int = 1000) -> dict:
        """Footprints of one image, from its prepared ``(S, S, 3)`` uint8 copy and its size in pixels.

        Returns ``footprints`` (the largest first, at most ``max_footprints``; ``truncated`` says whether some
        were left out), each with ``pixel_geometry`` (shapely, pixel coordinates of the image: x right, y down
        from its top-left corner), ``pixels``, ``mean_probability``, ``max_probability`` and, when the image
        is georeferenced (``transform``: its affine pixel -> ``crs`` transform), ``geometry_wgs84`` and a
        geodesic ``area_m2`` (simplified by ``simplify_m`` metres, those under ``min_area_m2`` dropped:
        :func:`landslide.inventory.footprints.vectorize`), or with only ``gsd_m`` (metres per pixel)
        ``area_m2`` = pixels x GSD²; ``mask`` (bool ``(height, width)``), ``landslide_share`` and
        ``threshold``. Footprints under the card's ``min_object_px`` (scaled from input pixels to the image's)
        are left out of all of them."""
        prob = self.probability_at(prepared, height, width)
        mask = prob >= self.threshold
        min_px = self.min_object_px * height * width / (self.input_size * self.input_size)
        if min_px > 1:  # the card's minimum footprint, from input pixels to the image's
            mask = components(mask, int(math.ceil(min_px)))[0] > 0
            prob = np.where(mask | (prob < self.threshold), prob, np.nan).astype(np.float32)
        if transform is not None and crs is not None:
            found = vectorize(prob, transform, crs, self.threshold, min_area_m2, simplify_m)
            to_pixels = ~transform
            matrix = [to_pixels.a, to_pixels.b, to_pixels.d, to_pixels.e, to_pixels.xoff, to_pixels.yoff]
            for f in found:
                f["pixel_geometry"] = affinity.affine_transform(f.pop("geometry"), matrix)
        else:
            found = trace(prob, self.threshold)
            for f in found:
                f["pixel_geometry"] = f.pop("geometry")
                if gsd_m:
                    f["area_m2"] = f["pixels"] * gsd_m * gsd_m
        return {"footprints": found[:max_footprints], "truncated": len(found) > max_footprints, "mask": mask,
                "landslide_share": float(mask.mean()) if mask.size else math.nan, "threshold": self.threshold}

    @staticmethod
    def mask_png(mask: np.ndarray) -> bytes:
        """A footprint mask as a greyscale PNG: 255 landslide, 0 elsewhere."""
        return encode_png(np.where(mask, 255, 0).astype(np.uint8))
