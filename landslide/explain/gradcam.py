"""Grad-CAM family heat maps through pytorch-grad-cam, on the registry's target layer.

pytorch-grad-cam registers hooks on the target layer; an explainer is therefore not safe to share between
threads (Ray Serve gives explanations their own deployment for that reason).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from landslide.errors import ConfigError
from landslide.models.classifier import LandslideClassifier

CAM_METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "eigencam": "EigenCAM"}
"""Method name -> its pytorch-grad-cam class. The package is imported when a map is made, not with this
module: it pulls in torchvision's detection ops and scikit-learn (~5 s), which a replica that only classifies
should not pay at start-up."""


class _WithTags(nn.Module):
    """The classifier with a batch's encoded tags bound, so pytorch-grad-cam can call it on images alone."""

    def __init__(self, model: LandslideClassifier):
        super().__init__()
        self.model = model
        self.tags: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images, tags=self.tags)


class CamExplainer:
    """Heat maps in [0, 1] at input resolution for a batch of normalised images (and, for a multi-modal
    model, their encoded tags: the map explains the image's part in the prediction given those tags)."""

    def __init__(self, model: LandslideClassifier, method: str = "gradcam"):
        if method not in CAM_METHODS:
            raise ConfigError(f"cam method {method!r}: choose one of {list(CAM_METHODS)}")
        self.model = model.eval()
        self.method = method
        self._bound = _WithTags(self.model)
        import pytorch_grad_cam

        cam_class = getattr(pytorch_grad_cam, CAM_METHODS[method])
        self._cam = cam_class(model=self._bound, target_layers=[model.cam_target_layer()])

    def __call__(self, images: torch.Tensor, classes: list[int] | None = None,
                 tags: torch.Tensor | None = None) -> np.ndarray:
        """CAMs of shape (B, H, W); ``classes`` picks the explained class per image (default: predicted)."""
        self._bound.tags = None if tags is None else tags.to(images.device)
        if classes is None:
            with torch.no_grad():
                classes = (self._bound(images).squeeze(1) > 0).long().tolist()
        from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

        targets = [BinaryClassifierOutputTarget(int(c)) for c in classes]
        # an input that requires grad makes every activation differentiable, also in frozen backbones
        images = images.detach().requires_grad_(True)
        with torch.enable_grad():
            cams = self._cam(input_tensor=images, targets=targets)
        return np.nan_to_num(np.asarray(cams, dtype=np.float32))

    def close(self) -> None:
        """Remove the hooks."""
        self._cam.activations_and_grads.release()


def overlay(rgb01: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a heat map over an RGB image (floats in [0, 1]) -> uint8 RGB."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(rgb01.astype(np.float32), cam, use_rgb=True, image_weight=1 - alpha)
