"""The input transform a model card prescribes, shared by evaluation and every inference path."""

from __future__ import annotations

from landslide.models.card import ModelCard


def eval_transform(card: ModelCard):
    """The deterministic transform a model card prescribes (:meth:`ModelCard.transform`): uint8
    ``(H, W, 3)`` -> float ``(3, S, S)``."""
    return card.transform()
