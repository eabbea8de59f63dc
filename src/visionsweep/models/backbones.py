"""torchvision backbones for transfer learning, and `feature_concat` of two of them.

`pretrained: true` loads the torchvision weights enum's DEFAULT weights (e.g. ResNet18_Weights.IMAGENET1K_V1)
the way torchvision does: from torch.hub's cache, downloading them there once (models/pretrained.py).
`pretrained: PATH` loads a local state dict of the torchvision model instead. Either way the backbone's own
classifier is dropped, so a 1000-class ImageNet file and a file saved from a fine-tuned model both load. The backbone's last linear layer is replaced by the head: one linear
layer, or a hidden layer first (`head_units`). 1-channel images are repeated to 3 channels, so pretrained
first-layer filters apply; `resize_to` upsamples small images (ImageNet weights expect about 224 px).
"""

from pathlib import Path
from typing import Literal

import torch
import torchvision
from pydantic import NonNegativeInt, PositiveInt
from torch import nn
from torch.nn import functional as F

from visionsweep.models import pretrained as weights
from visionsweep.models._layers import Dropout, choose
from visionsweep.models._registry import check_weights_file, register

BACKBONES = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "wide_resnet50_2": torchvision.models.wide_resnet50_2,
    "resnext50_32x4d": torchvision.models.resnext50_32x4d,
    "resnext101_32x8d": torchvision.models.resnext101_32x8d,
    "densenet121": torchvision.models.densenet121,
    "densenet201": torchvision.models.densenet201,
    "mobilenet_v3_small": torchvision.models.mobilenet_v3_small,
    "mobilenet_v3_large": torchvision.models.mobilenet_v3_large,
    "efficientnet_b0": torchvision.models.efficientnet_b0,
}
FREEZE = ("none", "backbone", "all_but_last_n")
MIN_SIZE = 32  # px: below this, the backbones' downsampling (32x) leaves no pixel in some of them (DenseNet)


class Features(nn.Module):
    """A torchvision model without its classifier: images in, penultimate features out."""

    def __init__(self, name: str, in_channels: int, image_size: int, resize_to: int | None,
                 pretrained: bool | str | None):
        super().__init__()
        size = resize_to or image_size
        if size < MIN_SIZE:
            raise ValueError(f"{name}: {size}px images are too small for this backbone (at least {MIN_SIZE}); "
                             f"set resize_to, e.g. resize_to: {MIN_SIZE}")
        self.resize_to = resize_to
        # 1 channel: repeated (keeps pretrained filters meaningful); other counts: a learned 1x1 mapping to RGB.
        self.to_rgb = None if in_channels in (1, 3) else nn.Conv2d(in_channels, 3, 1)
        self.net = BACKBONES[name](weights=None)
        check_weights_file(name, pretrained)
        classifier_name, classifier = [(n, m) for n, m in self.net.named_modules() if isinstance(m, nn.Linear)][-1]
        self.net.set_submodule(classifier_name, nn.Identity())
        self.dim = classifier.in_features
        if pretrained:
            state = starting_weights(name, pretrained)
            state = {k: v for k, v in state.items() if not k.startswith(f"{classifier_name}.")}
            try:
                self.net.load_state_dict(state)
            except RuntimeError as err:
                raise ValueError(f"{name}: {pretrained} is not a state dict of {name}: {err}") from None

    def blocks(self) -> list[nn.Module]:
        """The backbone's parameterised blocks in forward order (ResNet stages, DenseNet/MobileNet/EfficientNet
        feature blocks): the units `unfreeze_last_n` counts."""
        found = []
        for name, child in self.net.named_children():
            parts = list(child) if name == "features" else [child]
            found += [part for part in parts if any(True for _ in part.parameters())]
        return found

    def forward(self, x):
        if self.to_rgb is not None:
            x = self.to_rgb(x)
        elif x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize_to and x.shape[-1] != self.resize_to:
            x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        return self.net(x)


def starting_weights(name: str, pretrained: bool | str) -> dict:
    """The state dict `pretrained` names: the weights enum's DEFAULT (true), or a local file (a path)."""
    if pretrained is True:
        enum = weights.torchvision_weights(BACKBONES[name])
        with weights.explained(name, weights.torchvision_cache_hint(enum)):
            return enum.get_state_dict(progress=False, check_hash=False)
    return torch.load(Path(pretrained), map_location="cpu", weights_only=True)


class TransferClassifier(nn.Module):
    """Frozen or fine-tuned feature extractors, concatenated, with a trained head.

    `head` is what two-phase fine-tuning trains first (trainables/recipe.py). Frozen blocks stay in eval mode,
    so their batchnorm statistics stay what was loaded.
    """

    def __init__(self, extractors: list[Features], head: nn.Module, frozen: list[nn.Module]):
        super().__init__()
        self.extractors = nn.ModuleList(extractors)
        self.head = head
        self.frozen = frozen
        for module in frozen:
            module.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, x):
        return self.head(torch.cat([extractor(x) for extractor in self.extractors], dim=1))


def make_head(features: int, num_classes: int, head_units: int, head_dropout: float) -> nn.Module:
    if not head_units:
        return nn.Sequential(nn.Dropout(head_dropout), nn.Linear(features, num_classes))
    return nn.Sequential(
        nn.Linear(features, head_units), nn.ReLU(), nn.Dropout(head_dropout), nn.Linear(head_units, num_classes)
    )


def frozen_blocks(name: str, extractor: Features, freeze: str, unfreeze_last_n: int) -> list[nn.Module]:
    choose(name, "freeze", freeze, FREEZE)
    if freeze == "none":
        return []
    if freeze == "backbone":
        return [extractor.net]
    blocks = extractor.blocks()
    return blocks[: max(0, len(blocks) - unfreeze_last_n)]


def _register_backbone(name: str) -> None:
    def build(
        *,
        num_classes: int,
        in_channels: int,
        image_size: int,
        multilabel: bool,
        pretrained: bool | str | None = False,  # true: torchvision's DEFAULT weights (cached); or a local state dict's path
        freeze: Literal[FREEZE] = "none",  # none | backbone | all_but_last_n
        unfreeze_last_n: NonNegativeInt = 1,  # with all_but_last_n: the last blocks that train
        head_units: NonNegativeInt = 0,  # a hidden head layer of this many units (ReLU, dropout); 0: linear head only
        head_dropout: Dropout = 0.0,  # before the head's output layer
        resize_to: PositiveInt | None = None,  # px; upsample images to this size first (None: keep the size)
    ) -> nn.Module:
        extractor = Features(name, in_channels, image_size, resize_to, pretrained)
        head = make_head(extractor.dim, num_classes, head_units, head_dropout)
        return TransferClassifier([extractor], head, frozen_blocks(name, extractor, freeze, unfreeze_last_n))

    build.__name__ = name
    register(name)(build)


for _name in BACKBONES:
    _register_backbone(_name)


@register("feature_concat")
def feature_concat(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    multilabel: bool,
    first: Literal[tuple(BACKBONES)] = "resnet18",  # a backbone name (see BACKBONES)
    second: Literal[tuple(BACKBONES)] = "mobilenet_v3_small",  # a backbone name
    first_pretrained: bool | str | None = False,  # true: torchvision's DEFAULT weights (cached); or a local file's path
    second_pretrained: bool | str | None = False,
    freeze: Literal["none", "backbone"] = "backbone",  # both backbones
    head_dropout: Dropout = 0.0,  # before the linear head
    resize_to: PositiveInt | None = None,  # px; upsample images to this size first
) -> nn.Module:
    """Penultimate features of two backbones concatenated, with a trained linear head on top."""
    extractors = [
        Features(choose("feature_concat", field, backbone, BACKBONES), in_channels, image_size, resize_to, start)
        for field, backbone, start in (("first", first, first_pretrained), ("second", second, second_pretrained))
    ]
    choose("feature_concat", "freeze", freeze, ("none", "backbone"))
    head = make_head(sum(e.dim for e in extractors), num_classes, 0, head_dropout)
    frozen = [e.net for e in extractors] if freeze == "backbone" else []
    return TransferClassifier(extractors, head, frozen)
