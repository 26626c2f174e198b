"""The tag branch of the multi-modal classifier.

:class:`TagEncoder` turns encoded tags (see :mod:`landslide.data.tags`) into a feature vector: one learned
embedding per categorical column (row 0 is the explicit "unknown"), standardised numeric values with their
missing flags, then a small MLP. The classifier concatenates it with the image features before the head.

Because most chips have no tags, the encoder hides tags at random while training (``drop_all``: all of a
chip's tags, ``drop_each``: single tags), so the model learns to classify with any subset of tags and with
none; inference without tags feeds the all-unknown encoding.
"""

from __future__ import annotations

import torch
from torch import nn

from landslide.data.tags import TagSchema

OPTIONS = ("embedding_dim", "hidden", "drop_all", "drop_each")
"""The encoder's constructor options: set by ``model.tags``, kept in the model card."""


class TagEncoder(nn.Module):
    """Encoded tags ``(B, schema.width)`` -> features ``(B, hidden)``."""

    def __init__(self, schema: TagSchema, embedding_dim: int = 4, hidden: int = 32, drop_all: float = 0.3,
                 drop_each: float = 0.1):
        super().__init__()
        self.schema = schema
        self.n_cat, self.n_num = len(schema.categorical), len(schema.numeric)
        self.embedding_dim, self.hidden = embedding_dim, hidden
        self.drop_all, self.drop_each = drop_all, drop_each
        self.embeddings = nn.ModuleList(nn.Embedding(len(v) + 1, embedding_dim) for v in schema.categorical.values())
        self.mlp = nn.Sequential(nn.Linear(self.n_cat * embedding_dim + 2 * self.n_num, hidden), nn.ReLU())
        self.out_features = hidden

    def options(self) -> dict:
        """Constructor options (for the model card)."""
        return {k: getattr(self, k) for k in OPTIONS}

    def unknown(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The all-unknown encoding for ``n`` images."""
        out = torch.zeros(n, self.n_cat + 2 * self.n_num, device=device)
        out[:, self.n_cat + self.n_num:] = 1.0
        return out

    def _hide(self, cat: torch.Tensor, num: torch.Tensor, missing: torch.Tensor):
        b, width = cat.shape[0], self.n_cat + self.n_num
        hide = torch.rand(b, width, device=cat.device) < self.drop_each
        hide |= torch.rand(b, 1, device=cat.device) < self.drop_all
        hide_num = hide[:, self.n_cat:]
        return (cat.masked_fill(hide[:, :self.n_cat], 0), num.masked_fill(hide_num, 0.0),
                missing.masked_fill(hide_num, 1.0))

    def forward(self, tags: torch.Tensor) -> torch.Tensor:
        if tags.shape[1] != self.n_cat + 2 * self.n_num:
            raise ValueError(f"encoded tags have width {tags.shape[1]}, the model expects "
                             f"{self.n_cat + 2 * self.n_num} ({', '.join(self.schema.columns)})")
        tags = tags.float()
        cat = tags[:, :self.n_cat].long()
        num = tags[:, self.n_cat:self.n_cat + self.n_num]
        missing = tags[:, self.n_cat + self.n_num:]
        if self.training and (self.drop_all > 0 or self.drop_each > 0):
            cat, num, missing = self._hide(cat, num, missing)
        parts = [emb(cat[:, i].clamp(0, emb.num_embeddings - 1)) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat([*parts, num, missing], dim=1))
