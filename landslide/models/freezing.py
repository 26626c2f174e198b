"""Freezing strategies for transfer learning, as in the study.

- ``head``: feature extraction; the backbone is frozen, only the classification head trains.
- ``last_blocks``: the last N blocks of the backbone (as listed in the registry) train.
- ``last_layers``: the last N layers train; a layer is a module holding parameters of its own
  (conv, batch-norm, linear), counted from the output backwards, like Keras layers with weights.
- ``all``: everything trains (full fine-tuning).

Footprint (segmentation) models freeze their encoder the same way: ``head`` trains the decoder and
segmentation head on a frozen encoder (feature extraction); ``last_blocks`` counts the registry blocks the
encoder has (a ``features_only`` encoder has no classifier head, e.g. no ``conv_head``); the decoder always
trains.

Frozen batch-norm layers are kept in inference mode during training (their running statistics are not
updated), which is what Keras does for non-trainable layers and what small fine-tuning sets need.
"""

from __future__ import annotations

from torch import nn

from landslide.errors import ConfigError

STRATEGIES = ("head", "last_blocks", "last_layers", "all")


def parameter_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules with parameters of their own, in registration (input -> output) order."""
    return [(name, m) for name, m in module.named_modules() if any(True for _ in m.parameters(recurse=False))]


def _set(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad = flag


def apply_freezing(model: nn.Module, strategy: str, n: int = 0) -> dict:
    """Set ``requires_grad`` on ``model`` (a LandslideClassifier, or a LandslideSegmenter whose ``backbone`` is
    its encoder) and return parameter counts. ConfigError for an unknown strategy or an ``n`` beyond the
    backbone's blocks or layers."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"model.freeze.strategy={strategy!r}: choose one of {list(STRATEGIES)}")
    if strategy in ("last_blocks", "last_layers") and n < 1:
        raise ConfigError(f"model.freeze.n={n}: strategy {strategy!r} needs n >= 1")
    backbone = model.backbone
    _set(model, True)
    if strategy != "all":
        _set(backbone, False)
    unfrozen: list[str] = []
    if strategy == "last_blocks":
        modules = dict(backbone.named_modules())
        blocks = model.spec.blocks
        if getattr(model, "task", "classification") == "segmentation":  # the encoder's blocks only
            # timm's features_only encoder flattens some paths (densenet: features.denseblock4 ->
            # features_denseblock4), as the encoder's weights are loaded (landslide.models.segmentation)
            def encoder_path(path: str) -> str:
                return path if path in modules else path.replace(".", "_", 1)

            blocks = tuple(tuple(encoder_path(p) for p in b) for b in blocks)
            blocks = tuple(b for b in blocks if all(path in modules for path in b))
        if n > len(blocks):
            raise ConfigError(f"model.freeze.n={n}: {model.spec.name} has only {len(blocks)} blocks"
                              + (" in its encoder" if getattr(model, "task", "") == "segmentation" else ""))
        for block in blocks[-n:]:
            for path in block:
                if path not in modules:
                    raise ConfigError(f"registry block {path!r} not found in {model.spec.name}")
                _set(modules[path], True)
                unfrozen.append(path)
    elif strategy == "last_layers":
        layers = parameter_layers(backbone)
        if n > len(layers):
            raise ConfigError(f"model.freeze.n={n}: {model.spec.name} has only {len(layers)} layers with weights")
        for name, module in layers[-n:]:
            _set(module, True)
            unfrozen.append(name)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"strategy": strategy, "n": n, "trainable_params": trainable, "total_params": total,
            "unfrozen": unfrozen}


def set_frozen_batchnorm_eval(model: nn.Module) -> None:
    """Put batch-norm layers whose parameters are all frozen into eval mode (call after ``model.train()``)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
