"""Checkpoints: ``model.safetensors`` (tensors only) + ``model_card.json`` (a :class:`ModelCard`: everything
needed to rebuild and use the model). Nothing is ever pickled, so loading a checkpoint cannot run code."""

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
from landslide.models.card import CARD_FORMAT, ModelCard, SizeHead, TagsSection
from landslide.models.classifier import LandslideClassifier
from landslide.models.segmentation import LandslideSegmenter
from landslide.models.registry import get_spec

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.json"


def library_versions() -> dict[str, str]:
    """Versions recorded in every card and run folder."""
    import numpy
    import timm
    import torchvision

    return {"landslide": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


def make_card(model: LandslideClassifier | LandslideSegmenter, image_size: int, threshold: float = 0.5,
              **extra: Any) -> ModelCard:
    """A model card for ``model`` (a classifier or a footprint model); ``extra`` sets further
    :class:`ModelCard` fields (``name``, ``training``, ``freezing``, the size head's ``column`` as
    ``size_head={"column": ...}``)."""
    spec = model.spec
    if isinstance(model, LandslideSegmenter):
        return _segmentation_card(model, image_size, threshold, **extra)
    fields: dict[str, Any] = {
        "name": extra.pop("name", None) or spec.name, "backbone": spec.name, "timm_name": spec.timm_name,
        "input_size": int(image_size), "normalization": {"mean": list(spec.mean), "std": list(spec.std)},
        "classes": list(CLASSES), "positive_class": CLASSES[1], "threshold": float(threshold),
        "thresholds_by_tta": {"none": float(threshold)}, "cam_layer": spec.cam_layer,
        "dropout": float(model.dropout.p), "pretrained": model.weights_info,
        "parameters": sum(p.numel() for p in model.parameters()),
        "inputs": "image + tags" if model.tag_encoder is not None else "image",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }
    if model.tag_encoder is not None:
        fields["tags"] = TagsSection(tag_schema=model.tag_schema.to_json(), **model.tag_encoder.options())
    if model.size_head is not None:
        fields["size_head"] = SizeHead(classes=list(model.size_classes), **extra.pop("size_head", {}))
    try:
        return ModelCard(**fields, **extra)
    except ValueError as exc:  # pydantic's ValidationError: a programming error, named
        raise CheckpointError(f"cannot make a model card for {spec.name!r}: {exc}") from exc


def _segmentation_card(model: LandslideSegmenter, image_size: int, threshold: float, **extra: Any) -> ModelCard:
    spec = model.spec
    extra.pop("size_head", None)
    fields: dict[str, Any] = {
        "task": "segmentation", "architecture": model.architecture,
        "name": extra.pop("name", None) or f"{spec.name}-{model.architecture}", "backbone": spec.name,
        "timm_name": spec.timm_name, "input_size": int(image_size),
        "normalization": {"mean": list(spec.mean), "std": list(spec.std)}, "classes": list(CLASSES),
        "positive_class": CLASSES[1],
        "output": "one logit per pixel; sigmoid(logit) = probability that the pixel is landslide",
        "threshold": float(threshold), "thresholds_by_tta": {"none": float(threshold)}, "cam_layer": None,
        "dropout": 0.0, "pretrained": model.weights_info, "parameters": sum(p.numel() for p in model.parameters()),
        "inputs": "image", "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }
    try:
        return ModelCard(**fields, **extra)
    except ValueError as exc:
        raise CheckpointError(f"cannot make a model card for {spec.name!r}: {exc}") from exc


def save_checkpoint(model: LandslideClassifier, card: ModelCard, out_dir: str) -> str:
    """Write weights and card into ``out_dir`` (weights first, so a card always has its weights); records the
    weights' SHA-256 in ``card``. Returns ``out_dir``."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    raw = save_safetensors(state, metadata={"backbone": model.spec.name, "format": str(CARD_FORMAT)})
    storage.write_bytes(storage.join(out_dir, WEIGHTS_FILE), raw)
    card.weights_sha256 = hashlib.sha256(raw).hexdigest()
    write_card(card, out_dir)
    return out_dir


def write_card(card: ModelCard, model_dir: str) -> None:
    """(Re)write ``model_dir/model_card.json`` (e.g. with test metrics added after the weights were saved)."""
    storage.write_json(storage.join(model_dir, CARD_FILE), card.to_json())


def read_card(model_dir: str) -> ModelCard:
    """Read, upgrade and check the model card in ``model_dir``. CheckpointError: missing, unreadable, invalid
    or of a newer format."""
    uri = storage.join(model_dir, CARD_FILE)
    try:
        raw = storage.read_json(uri)
    except StorageError as exc:
        raise CheckpointError(f"model card: {exc}") from exc
    return ModelCard.from_json(raw, uri)


def load_checkpoint(model_dir: str, device: str | torch.device = "cpu", task: str = "classification"
                    ) -> tuple[LandslideClassifier, ModelCard]:
    """Rebuild the model described by the card in ``model_dir`` and load its weights (strictly). The card
    returned carries the weights' SHA-256 (cards of format 1 did not record it); CheckpointError when the card
    records another digest than the weights have, or when the model does another ``task`` than the caller
    needs (a footprint model given where a chip classifier is expected, or the reverse)."""
    card = _card_for(model_dir, task)
    return _load_weights(_build(card, model_dir, task), card, model_dir, device)


def check_checkpoint(model_dir: str, task: str = "classification") -> ModelCard:
    """The card of the checkpoint in ``model_dir``, after the checks :func:`load_checkpoint` makes (card, task,
    weights readable as safetensors, their SHA-256, every tensor's name and shape against the architecture)
    without allocating the model: it is built on PyTorch's ``meta`` device, which holds shapes, not data. For
    drivers that plan work and leave the model to workers. The card returned carries the weights' SHA-256.
    CheckpointError as :func:`load_checkpoint`."""
    card = _card_for(model_dir, task)
    with torch.device("meta"):
        model = _build(card, model_dir, task)
    return _load_weights(model, card, model_dir, None)[1]


def _build(card: ModelCard, model_dir: str, task: str):
    """The untrained model the card describes (no weights downloaded); CheckpointError for an unknown backbone
    or a malformed card section."""
    try:
        spec = get_spec(card.backbone)
    except LandslideError as exc:
        raise CheckpointError(f"{model_dir}: {exc}") from exc
    if task == "segmentation":
        return LandslideSegmenter(spec, card.architecture or "unet", pretrained="none")
    try:
        tags = card.tags
        schema = TagSchema.from_json(tags.tag_schema) if tags else None
        return LandslideClassifier(spec, dropout=card.dropout, pretrained="none", tags=schema,
                                   tag_options=tags.options() if tags else None,
                                   size_classes=card.size_head.classes if card.size_head else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{model_dir}: model card has a malformed tags or size_head section ({exc})") from exc


_TASK_WORDS = {"classification": "one landslide probability per chip",
               "segmentation": "footprints: a landslide probability per pixel"}


def _card_for(model_dir: str, task: str) -> ModelCard:
    card = read_card(model_dir)
    if card.task != task:
        raise CheckpointError(f"{model_dir} holds a {card.task} model ({_TASK_WORDS[card.task]}); this needs a "
                              f"{task} model ({_TASK_WORDS[task]})")
    return card


def _read_weights(card: ModelCard, model_dir: str) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, SHA-256 of the weights file); CheckpointError when unreadable, not safetensors or not the
    weights the card records."""
    uri = storage.join(model_dir, WEIGHTS_FILE)
    try:
        raw = storage.read_bytes(uri)
        state = load_safetensors(raw)
    except StorageError as exc:
        raise CheckpointError(f"model weights: {exc}") from exc
    except Exception as exc:
        raise CheckpointError(f"{uri}: not a valid safetensors file ({exc})") from exc
    digest = hashlib.sha256(raw).hexdigest()  # identifies this exact model in inventories
    if card.weights_sha256 and card.weights_sha256 != digest:
        raise CheckpointError(f"{uri}: the weights' SHA-256 {digest[:12]}... is not the {card.weights_sha256[:12]}... "
                              "its model card records: weights and card come from different models")
    return state, digest


def _load_weights(model, card: ModelCard, model_dir: str, device):
    spec = model.spec
    model.weights_info = card.pretrained
    uri = storage.join(model_dir, WEIGHTS_FILE)
    state, digest = _read_weights(card, model_dir)
    try:
        # a model on the meta device (check_checkpoint) takes the tensors as they are: same checks, no copy
        missing, unexpected = model.load_state_dict(state, strict=False, assign=device is None)
    except RuntimeError as exc:  # shape mismatches: the card describes another model than the weights
        raise CheckpointError(f"{uri}: weights do not match the model its card describes "
                              f"({str(exc).splitlines()[-1].strip()[:200]})") from None
    if missing or unexpected:
        raise CheckpointError(f"{uri}: weights do not match backbone {spec.name!r} "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    card = card.model_copy(update={"weights_sha256": digest})
    return (model if device is None else model.to(device).eval()), card
