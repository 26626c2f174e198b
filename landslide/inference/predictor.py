"""One ``Predictor`` for batch sweeps (Ray Data actors, the local sweep) and online inference (Ray Serve).

It owns a model loaded from a checkpoint and applies exactly the preprocessing of evaluation
(:func:`landslide.inference.transform.eval_transform`), split in two so the heavy part can move between
processes cheaply: :meth:`prepare` resizes to the model's input as **uint8** (what travels through Ray's
object store: 4x smaller than float tensors), :meth:`predict` normalises on the device and runs the model.
Grad-CAM (:meth:`explain`) registers hooks, so one Predictor must not explain from several threads at once.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from landslide import CLASSES
from landslide.data.images import encode_png
from landslide.errors import ConfigError
from landslide.explain.attention_stats import region_shares
from landslide.explain.gradcam import CAM_METHODS, CamExplainer, overlay
from landslide.models import tta as tta_lib
from landslide.models.checkpoint import load_checkpoint
from landslide.inference.device import resolve_device


def prepare_image(image: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` -> uint8 ``(size, size, 3)``, resized exactly as evaluation resizes."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    if image.shape[0] == size and image.shape[1] == size:
        return image
    pixels = torch.from_numpy(image if image.flags.writeable else image.copy())
    resized = v2.functional.resize(pixels.permute(2, 0, 1), [size, size], antialias=True)
    return resized.permute(1, 2, 0).numpy()


class Predictor:
    """Landslide probability (and Grad-CAM) for RGB uint8 images with the model in ``model_uri``."""

    def __init__(self, model_uri: str, device: str = "auto", threshold: float | None = None,
                 cam_method: str = "gradcam", num_threads: int | None = None, tta: str | None = None):
        if cam_method not in CAM_METHODS:
            raise ConfigError(f"cam method {cam_method!r}: choose one of {list(CAM_METHODS)}")
        if tta is not None and tta not in tta_lib.MODES:
            raise ConfigError(f"test-time augmentation {tta!r}: choose one of {list(tta_lib.MODES)}")
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = resolve_device(device)
        self.model, self.card = load_checkpoint(model_uri, self.device)
        self.model_uri = model_uri
        # test-time augmentation: the card's mode unless asked otherwise, with the validation threshold chosen
        # for that mode when the card has one
        self.tta = tta or self.card.tta
        self.input_size = self.card.input_size
        self.threshold = float(self.card.threshold_for(self.tta) if threshold is None else threshold)
        self.mean, self.std = self.card.normalization.mean, self.card.normalization.std
        self._mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        self.cam_method = cam_method
        self._explainers: dict[str, CamExplainer] = {}

    @property
    def info(self) -> dict:
        """Model identity recorded with every prediction: name, backbone and version (weights hash)."""
        return self.card.prediction_info(self.threshold, self.tta)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 ``(H, W, 3)`` -> uint8 ``(S, S, 3)`` at the model's input size (as evaluation resizes)."""
        return prepare_image(image, self.input_size)

    def _tensor(self, batch: np.ndarray) -> torch.Tensor:
        batch = np.asarray(batch)
        if batch.ndim != 4:
            raise ValueError(f"expected a (B, H, W, 3) batch of RGB uint8 images, got shape {batch.shape}")
        if batch.shape[1:3] != (self.input_size, self.input_size):  # not prepared: resize as evaluation does,
            batch = np.stack([self.prepare(image) for image in batch])  # never score at the wrong size
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        return (x - self._mean) / self._std

    @property
    def tag_columns(self) -> list[str]:
        """The tags a multi-modal model takes (empty for image-only models)."""
        schema = self.model.tag_schema
        return schema.columns if schema is not None else []

    def encode_tags(self, records: list[dict | None] | None, n: int) -> torch.Tensor | None:
        """Encoded tags for ``n`` images from one mapping per image (None: no tags for any image). Unknown
        tag names or badly typed values raise a ConfigError naming them; an image-only model refuses tags."""
        schema = self.model.tag_schema
        if records is None or not any(records):
            return None
        if schema is None:
            raise ConfigError(f"model {self.info['name']!r} takes no tags (image-only)")
        if len(records) != n:
            raise ConfigError(f"{len(records)} tag sets for {n} images")
        return torch.from_numpy(schema.encode_records(records)).to(self.device)

    @torch.inference_mode()
    def predict(self, batch: np.ndarray, tags: list[dict | None] | None = None) -> np.ndarray:
        """Probabilities of landslide for a ``(B, S, S, 3)`` uint8 batch of prepared images (a batch of another
        size is prepared first); a multi-modal model takes optional ``tags`` (one mapping per image; missing tags
        are unknown, as in training)."""
        if len(batch) == 0:
            return np.zeros(0, np.float32)
        return self._probabilities(self._tensor(batch), self.encode_tags(tags, len(batch)))

    @torch.inference_mode()
    def _probabilities(self, x: torch.Tensor, tags: torch.Tensor | None) -> np.ndarray:
        return tta_lib.probabilities(self.model, x, tags, self.tta).cpu().numpy()

    def label(self, probabilities: np.ndarray) -> list[str]:
        """Class names at the threshold."""
        return [CLASSES[int(p >= self.threshold)] for p in probabilities]

    def explain(self, batch: np.ndarray, method: str | None = None,
                tags: list[dict | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, CAMs ``(B, S, S)`` in [0, 1]) for a prepared batch; each CAM explains the
        predicted class. Not thread-safe (Grad-CAM hooks)."""
        method = method or self.cam_method
        if method not in self._explainers:
            if method not in CAM_METHODS:
                raise ConfigError(f"cam method {method!r}: choose one of {list(CAM_METHODS)}")
            self._explainers[method] = CamExplainer(self.model, method)
        x, encoded = self._tensor(batch), self.encode_tags(tags, len(batch))
        probs = self._probabilities(x, encoded)
        classes = [int(p >= self.threshold) for p in probs]
        return probs, self._explainers[method](x, classes=classes, tags=encoded)

    @staticmethod
    def overlay_image(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
        """A heat map blended over a prepared uint8 image: ``(S, S, 3)`` uint8."""
        return overlay(image.astype(np.float32) / 255.0, cam)

    @staticmethod
    def overlay_png(image: np.ndarray, cam: np.ndarray) -> bytes:
        """PNG bytes of :meth:`overlay_image`."""
        return encode_png(Predictor.overlay_image(image, cam))

    @staticmethod
    def attention(cam: np.ndarray) -> dict[str, float]:
        """Share of the heat map on the border, corners and centre (see explain.attention_stats)."""
        return region_shares(cam)

    def close(self) -> None:
        for explainer in self._explainers.values():
            explainer.close()
        self._explainers.clear()
