"""The input transform a model card prescribes, shared by evaluation and every inference path."""

from __future__ import annotations

from landslide.data.transforms import build_transform


def eval_transform(card: dict):
    """The deterministic transform a model card prescribes."""
    norm = card["normalization"]
    return build_transform(int(card["input_size"]), tuple(norm["mean"]), tuple(norm["std"]))
