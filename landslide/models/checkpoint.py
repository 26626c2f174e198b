"""Checkpoints: ``model.safetensors`` (tensors only) + ``model_card.json`` (everything needed to rebuild and
use the model). Nothing is ever pickled, so loading a checkpoint cannot run code."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from landslide import CLASSES, __version__, storage
from landslide.data.tags import TagSchema
from landslide.errors import CheckpointError, LandslideError, StorageError
from landslide.models.classifier import LandslideClassifier
from landslide.models.multimodal import OPTIONS as TAG_OPTIONS
from landslide.models.registry import get_spec

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.json"
CARD_FORMAT = 1


def library_versions() -> dict[str, str]:
    """Versions recorded in every card and run folder."""
    import numpy
    import timm
    import torchvision

    return {"landslide": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


def make_card(model: LandslideClassifier, image_size: int, threshold: float = 0.5, **extra: Any) -> dict:
    """A model card for ``model``; ``extra`` adds fields such as training data summary and metrics."""
    spec = model.spec
    card = {
        "format": CARD_FORMAT,
        "name": extra.pop("name", spec.name),
        "backbone": spec.name,
        "timm_name": spec.timm_name,
        "input_size": int(image_size),
        "normalization": {"mean": list(spec.mean), "std": list(spec.std)},
        "classes": list(CLASSES),
        "positive_class": CLASSES[1],
        "output": "one logit; sigmoid(logit) = probability of landslide",
        "threshold": float(threshold),
        "cam_layer": spec.cam_layer,
        "dropout": float(model.dropout.p),
        "pretrained": model.weights_info,
        "parameters": sum(p.numel() for p in model.parameters()),
        "inputs": "image + tags" if model.tag_encoder is not None else "image",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }
    if model.tag_encoder is not None:
        card["tags"] = {"schema": model.tag_schema.to_json(), **model.tag_encoder.options(),
                        "without_tags": "supported: every tag unknown"}
    if model.size_head is not None:
        card["size_head"] = {"classes": list(model.size_classes),
                             "output": "one logit per size class (softmax); meaningful for landslides only",
                             **extra.pop("size_head", {})}
    card.update(extra)
    return card


def save_checkpoint(model: LandslideClassifier, card: dict, out_dir: str) -> str:
    """Write weights and card into ``out_dir`` (weights first, so a card always has its weights)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    storage.write_bytes(storage.join(out_dir, WEIGHTS_FILE),
                        save_safetensors(state, metadata={"backbone": model.spec.name, "format": str(CARD_FORMAT)}))
    storage.write_json(storage.join(out_dir, CARD_FILE), card)
    return out_dir


def read_card(model_dir: str) -> dict:
    """Read and check a model card."""
    uri = storage.join(model_dir, CARD_FILE)
    try:
        card = storage.read_json(uri)
    except StorageError as exc:
        raise CheckpointError(f"model card: {exc}") from exc
    for key in ("backbone", "input_size", "normalization", "threshold"):
        if key not in card:
            raise CheckpointError(f"{uri}: model card lacks {key!r}")
    return card


def load_checkpoint(model_dir: str, device: str | torch.device = "cpu") -> tuple[LandslideClassifier, dict]:
    """Rebuild the model described by the card in ``model_dir`` and load its weights (strictly)."""
    card = read_card(model_dir)
    try:
        spec = get_spec(card["backbone"])
    except LandslideError as exc:
        raise CheckpointError(f"{model_dir}: {exc}") from exc
    try:
        tags = card.get("tags")
        schema = TagSchema.from_json(tags["schema"]) if tags else None
        options = {k: tags[k] for k in TAG_OPTIONS if k in tags} if tags else None
        size = card.get("size_head")
        model = LandslideClassifier(spec, dropout=float(card.get("dropout", 0.2)), pretrained="none", tags=schema,
                                    tag_options=options, size_classes=size["classes"] if size else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{model_dir}: model card has a malformed tags or size_head section ({exc})") from exc
    model.weights_info = card.get("pretrained", {})
    uri = storage.join(model_dir, WEIGHTS_FILE)
    try:
        raw = storage.read_bytes(uri)
        state = load_safetensors(raw)
    except StorageError as exc:
        raise CheckpointError(f"model weights: {exc}") from exc
    except Exception as exc:
        raise CheckpointError(f"{uri}: not a valid safetensors file ({exc})") from exc
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches: the card describes another model than the weights
        raise CheckpointError(f"{uri}: weights do not match the model its card describes "
                              f"({str(exc).splitlines()[-1].strip()[:200]})") from None
    if missing or unexpected:
        raise CheckpointError(f"{uri}: weights do not match backbone {spec.name!r} "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    card["weights_sha256"] = hashlib.sha256(raw).hexdigest()  # identifies this exact model in inventories
    return model.to(device).eval(), card
