"""Image classifiers for the loss comparison: a small CNN that trains in seconds on a CPU, and a CIFAR ResNet-18.

Both are built from torch's default initialisation, so ``torch.manual_seed(s)`` before construction fixes the
initial weights; the experiment relies on that to start every loss from the same network.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

MODEL_NAMES: Tuple[str, ...] = ("small-cnn", "resnet18")


class SmallCNN(nn.Module):
    """Three 3x3 conv + ReLU + 2x2 max-pool stages (width, 2*width, 4*width), global average pool, one Linear.

    Input [N, C, H, W] with H, W divisible by 8 (32x32 here); output logits [N, num_classes].
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        layers = []
        channels = in_channels
        for stage in range(3):
            out = width * 2 ** stage
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[2] % 8 == 0 and x.shape[3] % 8 == 0, f"need [N, C, 8a, 8b], got {list(x.shape)}"
        return self.head(self.features(x).mean(dim=(2, 3)))


def resnet18_cifar(in_channels: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 (random init, nothing downloaded) with the usual 32x32 stem: 3x3 stride-1 conv1, no
    max-pool, so the 32x32 input is not shrunk to 8x8 before the first block."""
    # Deferred: importing torchvision.models takes 2.7-4.0 s after torch (measured, 3 runs); only --model resnet18
    # needs it.
    from torchvision.models import resnet18
    net = resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def make_classifier(name: str, in_channels: int, num_classes: int) -> nn.Module:
    """The network for ``--model``; its initial weights depend only on torch's RNG state at the call."""
    if name == "small-cnn":
        return SmallCNN(in_channels, num_classes)
    if name == "resnet18":
        return resnet18_cifar(in_channels, num_classes)
    raise ValueError(f"unknown --model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
