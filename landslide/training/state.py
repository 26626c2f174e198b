"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

``train_state/`` holds ``model.safetensors``, ``optimizer.safetensors`` and ``state.json``; the JSON is
written last and names the epoch the tensors belong to, so a crash mid-write leaves the previous epoch's
state usable or is detected (metadata mismatch) instead of resuming from half-written files.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from landslide import storage
from landslide.errors import CheckpointError

STATE_DIR = "train_state"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, torch.Tensor):
        return {"__tensor_scalar__": value.item()}
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        if set(value) == {"__tensor_scalar__"}:
            return torch.tensor(value["__tensor_scalar__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def optimizer_to_flat(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors and a JSON-able rest."""
    tensors, rest = {}, {"param_groups": _json_safe(state["param_groups"]), "state": {}}
    for idx, entry in state["state"].items():
        rest["state"][str(idx)] = {}
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value.detach().cpu().contiguous()
                rest["state"][str(idx)][name] = "__tensor__"
            else:
                rest["state"][str(idx)][name] = _json_safe(value)
    return tensors, rest


def optimizer_from_flat(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    """Inverse of :func:`optimizer_to_flat`."""
    state = {}
    for idx, entry in rest["state"].items():
        state[int(idx)] = {name: tensors[f"{idx}.{name}"] if value == "__tensor__" else _from_json(value)
                           for name, value in entry.items()}
    return {"state": state, "param_groups": _from_json(rest["param_groups"])}


def save_state(out_dir: str, model_state: dict[str, torch.Tensor], optimizer_state: dict, extra: dict) -> None:
    """Write the state for the epoch in ``extra['epoch']``."""
    base = storage.join(out_dir, STATE_DIR)
    epoch = str(extra["epoch"])
    opt_tensors, opt_rest = optimizer_to_flat(optimizer_state)
    cpu_model = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    storage.write_bytes(storage.join(base, "model.safetensors"), save_safetensors(cpu_model, {"epoch": epoch}))
    storage.write_bytes(storage.join(base, "optimizer.safetensors"),
                        save_safetensors(opt_tensors or {"_empty": torch.zeros(0)}, {"epoch": epoch}))
    storage.write_json(storage.join(base, "state.json"), _json_safe({**extra, "optimizer": opt_rest}))


def load_state(out_dir: str) -> tuple[dict, dict, dict] | None:
    """(model_state, optimizer_state, extra) of the last completed epoch, or None when there is none."""
    base = storage.join(out_dir, STATE_DIR)
    json_uri = storage.join(base, "state.json")
    if not storage.exists(json_uri):
        return None
    extra = _from_json(storage.read_json(json_uri))
    tensors = {}
    for name in ("model", "optimizer"):
        uri = storage.join(base, f"{name}.safetensors")
        try:
            data = storage.read_bytes(uri)
            tensors[name] = load_safetensors(data)
            meta_epoch = _safetensors_metadata(data).get("epoch")
        except Exception as exc:
            raise CheckpointError(f"{uri}: unreadable training state ({exc}); delete {base} to start over") from exc
        if meta_epoch != str(extra["epoch"]):
            raise CheckpointError(f"{base}: {name} tensors are from epoch {meta_epoch}, state.json from epoch "
                                  f"{extra['epoch']} (interrupted write?); delete {base} to start over")
    opt_rest = extra.pop("optimizer")
    tensors["optimizer"].pop("_empty", None)
    return tensors["model"], optimizer_from_flat(tensors["optimizer"], opt_rest), extra


def _safetensors_metadata(data: bytes) -> dict:
    import json
    import struct

    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]).get("__metadata__", {})


def save_best(out_dir: str, model_state: dict[str, torch.Tensor], epoch: int) -> None:
    """Keep the best epoch's weights beside the resumable state."""
    cpu = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    storage.write_bytes(storage.join(out_dir, STATE_DIR, "best.safetensors"),
                        save_safetensors(cpu, {"epoch": str(epoch)}))


def load_best(out_dir: str) -> dict[str, torch.Tensor] | None:
    """The best epoch's weights, if saved."""
    uri = storage.join(out_dir, STATE_DIR, "best.safetensors")
    if not storage.exists(uri):
        return None
    return load_safetensors(storage.read_bytes(uri))
