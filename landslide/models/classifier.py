"""The landslide classifier: a registry backbone plus a one-logit head (logit > 0 means landslide)."""

from __future__ import annotations

import timm
import torch
from torch import nn

from landslide.models.baseline import BaselineCNN
from landslide.models.registry import BackboneSpec, get_spec
from landslide.models.weights import apply_pretrained


def create_backbone(spec: BackboneSpec) -> nn.Module:
    """A feature extractor returning pooled features of size ``num_features`` (no classifier)."""
    if spec.timm_name is None:
        return BaselineCNN()
    return timm.create_model(spec.timm_name, pretrained=False, num_classes=0)


class LandslideClassifier(nn.Module):
    """Backbone -> dropout -> Linear(num_features, 1). ``forward`` returns logits of shape (B, 1)."""

    def __init__(self, spec: BackboneSpec, dropout: float = 0.2, pretrained: str = "none"):
        super().__init__()
        self.spec = spec
        self.backbone = create_backbone(spec)
        self.weights_info = apply_pretrained(spec, self.backbone, pretrained)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.backbone.num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(x)))

    def cam_target_layer(self) -> nn.Module:
        """The module whose activations Grad-CAM explains (from the registry)."""
        return dict(self.backbone.named_modules())[self.spec.cam_layer]


def build_model(backbone: str, pretrained: str = "none", dropout: float = 0.2) -> LandslideClassifier:
    """Build a classifier for a registry backbone name."""
    return LandslideClassifier(get_spec(backbone), dropout=dropout, pretrained=pretrained)


def count_parameters(model: nn.Module) -> int:
    """All parameters."""
    return sum(p.numel() for p in model.parameters())
