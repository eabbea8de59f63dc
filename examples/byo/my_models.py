"""Your own models, used by import path: `model: my_models:small_resnet` (run from this folder).

Each takes the data's shape as keywords (num_classes, in_channels, image_size; multilabel if it names it)
and its own keyword parameters, which a sweep may search (`space`) or set (`model_params`). It returns a
torch.nn.Module mapping (B, C, H, W) floats to (B, num_classes) logits.
"""

from torch import nn


def small_resnet(num_classes: int, in_channels: int, image_size: int,
                 width: int = 16,  # channels of every block
                 blocks: int = 2,  # residual blocks
                 dropout: float = 0.0):  # before the output layer
    """A stem, `blocks` residual blocks at one width, global average pooling, a linear layer."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        *[ResidualBlock(width) for _ in range(blocks)],
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, num_classes),
    )


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
        )

    def forward(self, x):
        return nn.functional.relu(x + self.body(x))


class LinearProbe(nn.Module):
    """A class works too: its __init__ takes the same keywords."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int, hidden: int = 0):
        super().__init__()
        features = in_channels * image_size * image_size
        layers = [nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)] if hidden else \
            [nn.Linear(features, num_classes)]
        self.net = nn.Sequential(nn.Flatten(), *layers)

    def forward(self, x):
        return self.net(x)
