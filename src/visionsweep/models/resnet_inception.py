"""ResNet and Inception blocks in stages, built from a list of `Stage` objects.

The scalar parameters (`block`, `n_stages`, `blocks_per_stage`, `width`) describe the common shape and are
what a search samples; `stages` (fixed in `model_params`) gives the full object instead, e.g.
`stages: [{kind: resnet, blocks: 2, width: 32}, {kind: inception, blocks: 1, width: 64}]`.
Between stages a 2x2 max-pool halves the image; the head is global average pooling and a linear layer.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import PositiveInt
from torch import nn

from visionsweep.models._layers import Dropout, choose, initialise
from visionsweep.models._registry import register

KINDS = ("resnet", "inception")
SHORTCUTS = ("auto", "projection", "none")  # auto: identity where shapes match, else a 1x1 projection


@dataclass(frozen=True)
class Stage:
    kind: str  # resnet | inception
    blocks: int  # blocks in this stage
    width: int  # output channels of each block


def conv_bn(channels_in: int, channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
    )


class Residual(nn.Module):
    """body(x) + shortcut(x), then ReLU; `shortcut` none makes it a plain block."""

    def __init__(self, body: nn.Module, channels_in: int, channels: int, shortcut: str):
        super().__init__()
        self.body = body
        if shortcut == "none":
            self.shortcut = None
        elif shortcut == "auto" and channels_in == channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        out = self.body(x)
        return torch.relu(out + self.shortcut(x)) if self.shortcut is not None else out


def resnet_body(channels_in: int, channels: int) -> nn.Module:
    """The basic ResNet block: two 3x3 convs (the second without ReLU: it comes after the sum)."""
    return nn.Sequential(
        conv_bn(channels_in, channels, 3),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
    )


class InceptionBody(nn.Module):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-3x3-3x3 in place of 5x5; 3x3 max-pool-1x1), concatenated."""

    def __init__(self, channels_in: int, channels: int):
        super().__init__()
        branch = channels // 4
        self.branches = nn.ModuleList([
            conv_bn(channels_in, channels - 3 * branch, 1),
            nn.Sequential(conv_bn(channels_in, branch, 1), conv_bn(branch, branch, 3)),
            nn.Sequential(conv_bn(channels_in, branch, 1), conv_bn(branch, branch, 3), conv_bn(branch, branch, 3)),
            nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn(channels_in, branch, 1)),
        ])

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)


@register("resnet_inception")
def resnet_inception(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    multilabel: bool,
    block: Literal["resnet", "inception", "mixed"] = "resnet",  # mixed: resnet and inception stages alternate
    n_stages: PositiveInt = 3,  # each after the first halves the image
    blocks_per_stage: PositiveInt = 2,
    width: PositiveInt = 32,  # channels of the first stage; doubled by each later stage
    shortcut: Literal[SHORTCUTS] = "auto",  # auto | projection | none (a plain network)
    dropout: Dropout = 0.0,  # before the output layer
    stages: list | None = None,  # the full list of Stage (or dicts of its fields); overrides the four above
) -> nn.Module:
    choose("resnet_inception", "block", block, (*KINDS, "mixed"))
    choose("resnet_inception", "shortcut", shortcut, SHORTCUTS)
    if stages is None:
        kinds = [KINDS[i % 2] if block == "mixed" else block for i in range(n_stages)]
        stages = [Stage(kind, blocks_per_stage, width * 2**i) for i, kind in enumerate(kinds)]
    stages = [s if isinstance(s, Stage) else Stage(**s) for s in stages]
    if image_size >> (len(stages) - 1) < 1:
        raise ValueError(f"resnet_inception: {len(stages)} stages halve a {image_size}px image below one pixel")
    layers, channels_in = [conv_bn(in_channels, stages[0].width, 3)], stages[0].width
    for index, stage in enumerate(stages):
        choose("resnet_inception", f"stages[{index}].kind", stage.kind, KINDS)
        if index:
            layers.append(nn.MaxPool2d(2))
        for _ in range(stage.blocks):
            body = resnet_body if stage.kind == "resnet" else InceptionBody
            layers.append(Residual(body(channels_in, stage.width), channels_in, stage.width, shortcut))
            channels_in = stage.width
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels_in, num_classes)]
    return initialise(nn.Sequential(*layers, *head), "kaiming", "resnet_inception")
