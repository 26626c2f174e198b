"""The landslide classifier: a registry backbone plus a one-logit head (logit > 0 means landslide).

Optionally multi-modal: a :class:`~landslide.models.multimodal.TagEncoder` whose features are concatenated
with the image features before the head; and optionally a second head that predicts the landslide size
class (trained only on landslide chips whose size is known).
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from landslide.data.tags import TagSchema
from landslide.models.baseline import BaselineCNN
from landslide.models.multimodal import TagEncoder
from landslide.models.registry import BackboneSpec, get_spec
from landslide.models.weights import apply_pretrained


def create_backbone(spec: BackboneSpec) -> nn.Module:
    """A feature extractor returning pooled features of size ``num_features`` (no classifier)."""
    if spec.timm_name is None:
        return BaselineCNN()
    return timm.create_model(spec.timm_name, pretrained=False, num_classes=0)


class LandslideClassifier(nn.Module):
    """Backbone [+ tag encoder] -> dropout -> Linear(features, 1) [and Linear(features, size classes)].

    ``forward(x, tags=None)`` returns landslide logits ``(B, 1)``; a multi-modal model given no ``tags``
    classifies with every tag unknown. ``with_size=True`` returns ``(logits, size_logits)``.
    """

    def __init__(self, spec: BackboneSpec, dropout: float = 0.2, pretrained: str = "none",
                 tags: TagSchema | None = None, tag_options: dict | None = None,
                 size_classes: list[str] | tuple[str, ...] | None = None):
        super().__init__()
        self.spec = spec
        self.backbone = create_backbone(spec)
        self.weights_info = apply_pretrained(spec, self.backbone, pretrained)
        self.dropout = nn.Dropout(dropout)
        features = self.backbone.num_features
        self.tag_encoder = TagEncoder(tags, **(tag_options or {})) if tags is not None else None
        if self.tag_encoder is not None:
            features += self.tag_encoder.out_features
        self.head = nn.Linear(features, 1)
        self.size_classes = tuple(size_classes) if size_classes else None
        self.size_head = nn.Linear(features, len(self.size_classes)) if self.size_classes else None

    @property
    def tag_schema(self) -> TagSchema | None:
        return self.tag_encoder.schema if self.tag_encoder is not None else None

    def features(self, x: torch.Tensor, tags: torch.Tensor | None = None) -> torch.Tensor:
        """Image features, with the tag features appended for a multi-modal model."""
        feats = self.backbone(x)
        if self.tag_encoder is None:
            return feats
        if tags is None:
            tags = self.tag_encoder.unknown(len(x), x.device)
        return torch.cat([feats, self.tag_encoder(tags.to(x.device)).to(feats.dtype)], dim=1)

    def forward(self, x: torch.Tensor, tags: torch.Tensor | None = None, with_size: bool = False):
        fused = self.dropout(self.features(x, tags))
        logits = self.head(fused)
        if not with_size:
            return logits
        return logits, (self.size_head(fused) if self.size_head is not None else None)

    def cam_target_layer(self) -> nn.Module:
        """The module whose activations Grad-CAM explains (from the registry)."""
        return dict(self.backbone.named_modules())[self.spec.cam_layer]


def build_model(backbone: str, pretrained: str = "none", dropout: float = 0.2, tags: TagSchema | None = None,
                tag_options: dict | None = None, size_classes: list[str] | None = None) -> LandslideClassifier:
    """Build a classifier for a registry backbone name (multi-modal when ``tags`` is given)."""
    return LandslideClassifier(get_spec(backbone), dropout=dropout, pretrained=pretrained, tags=tags,
                               tag_options=tag_options, size_classes=size_classes)


def count_parameters(model: nn.Module) -> int:
    """All parameters."""
    return sum(p.numel() for p in model.parameters())
