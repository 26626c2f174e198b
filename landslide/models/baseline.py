"""The study's baseline CNN: five 3x3 conv blocks (conv-BN-ReLU-maxpool) and one dense layer, ~2.8M params."""

from __future__ import annotations

import torch
from torch import nn


class BaselineCNN(nn.Module):
    """A small from-scratch CNN; like timm backbones it returns pooled features of size ``num_features``."""

    def __init__(self, channels: tuple[int, ...] = (48, 96, 192, 384, 512), num_features: int = 256):
        super().__init__()
        layers, in_ch = [], 3
        for out_ch in channels:
            layers.append(nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True), nn.MaxPool2d(2)))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_ch, num_features), nn.ReLU(inplace=True))
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)))
