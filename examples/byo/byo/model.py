"""Your own model builder: a small CNN for small images, plain PyTorch.

It takes the data's shape as keywords (num_classes, in_channels, image_size), then its own parameters: the
contract visionsweep calls builders with, so that a promoted model is rebuilt from it to predict.
"""

from torch import nn


def small_cnn(num_classes: int, in_channels: int, image_size: int, width: int = 16, dropout: float = 0.1) -> nn.Module:
    del image_size  # global average pooling: any size
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(2 * width, num_classes),
    )
