"""Balanced sampling of training chips by class, region or both, on one process or sharded across workers.

Oversampling the rarer cells is the usual remedy when one region (or class) outnumbers the others, so that a
model trained on two regions does not learn mostly the larger one (e.g. Buda & Maki 2018, "A systematic
study of the class imbalance problem in convolutional neural networks", for classes; the same argument
holds for domains). Each epoch draws as many chips as the split has, with replacement, every cell equally
likely; with several Ray Train workers each rank takes its own slice of the same draw (like
``torch.utils.data.DistributedSampler``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from landslide.data.manifest import Manifest

SAMPLING_KEYS = {"class": ("label",), "region": ("region",), "region_class": ("region", "label")}
"""The manifest columns whose combinations each sampling mode balances."""


def sampling_cells(manifest: Manifest, mode: str) -> list[tuple]:
    """The cell of each chip of ``manifest`` for sampling ``mode`` (a key of :data:`SAMPLING_KEYS`); a manifest
    without a ``region`` column is one region."""
    frame = manifest.frame
    columns = [frame[c] if c in frame else ["all"] * len(frame) for c in SAMPLING_KEYS[mode]]
    return list(zip(*columns))


def cell_counts(cells: Sequence[tuple]) -> dict[str, int]:
    """How many chips each cell has, keyed ``"region/label"`` (for the run's records)."""
    counts: dict[str, int] = {}
    for cell in cells:
        key = "/".join(str(c) for c in cell)
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


class BalancedSampler(Sampler[int]):
    """Indices of one epoch: ``len(cells)`` draws (rounded up to a multiple of ``num_replicas``) with
    replacement, each distinct cell equally likely and chips uniform within a cell; this rank's slice of
    them. Deterministic for a (seed, epoch) pair; call :meth:`set_epoch` before each epoch."""

    def __init__(self, cells: Sequence[tuple], seed: int = 0, num_replicas: int = 1, rank: int = 0):
        if not cells:
            raise ValueError("no chips to sample")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        index: dict[tuple, int] = {}
        ids = [index.setdefault(c, len(index)) for c in cells]
        sizes = torch.bincount(torch.tensor(ids), minlength=len(index)).double()
        self.weights = (1.0 / sizes)[torch.tensor(ids)]
        self.seed, self.num_replicas, self.rank, self.epoch = seed, num_replicas, rank, 0
        self.total = math.ceil(len(cells) / num_replicas) * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        draws = torch.multinomial(self.weights, self.total, replacement=True, generator=generator)
        return iter(draws[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.total // self.num_replicas
