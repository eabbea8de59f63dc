"""timm models by name: `model: timm/resnet10t`, any of `timm.list_models()` (`visionsweep models --timm PATTERN`).

Built with `timm.create_model(NAME, num_classes=..., in_chans=...)`; timm's own arguments (`drop_rate`,
`drop_path_rate`, ...: the model class's keyword arguments) are the model's parameters, to search or set.
`pretrained: true` loads timm's pretrained weights its own way: from the Hugging Face cache ($HF_HOME/hub),
downloading them there once when a network is reachable. `pretrained: PATH` loads a local file
(timm's `pretrained_cfg_overlay={"file": PATH}`). timm adapts the first layer to `in_channels` and keeps
a new classifier for `num_classes`. `resize_to` upsamples small images first (pretrained weights expect
about the size in the model's `pretrained_cfg`, often 224 px).
"""

import difflib
import functools
import inspect

import torch
from torch import nn
from torch.nn import functional as F

from visionsweep.models._registry import TIMM_PREFIX, Builder

SET_BY_US = ("num_classes", "in_chans", "img_size", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay",
             "cache_dir", "features_only", "checkpoint_path", "device", "dtype")
OWN = {"pretrained": False, "resize_to": None}  # besides the class's arguments; see the module docstring


def names(pattern: str = "*") -> list[str]:
    """timm's model names matching a wildcard pattern (`resnet*`), each as `timm/NAME`."""
    import timm

    return [TIMM_PREFIX + name for name in timm.list_models(pattern)]


@functools.cache
def builder(name: str) -> Builder:
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=8)
        raise ValueError(
            f"model {TIMM_PREFIX + name!r}: timm {timm.__version__} has no model {name!r}"
            + (f"; similar: {', '.join(TIMM_PREFIX + c for c in close)}" if close else "")
            + "; list them with `visionsweep models --timm PATTERN`"
        )
    return Builder(TIMM_PREFIX + name, functools.partial(build, name), {**OWN, **class_arguments(name)},
                   where=f"timm's {name} and its model class")


def class_arguments(name: str) -> dict:
    """The keyword arguments of the model's class with their defaults (drop_rate, drop_path_rate, ...)."""
    signature = inspect.signature(type_of(name)).parameters
    return {k: p.default for k, p in signature.items()
            if k not in SET_BY_US and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is not inspect.Parameter.empty}


class Resized(nn.Module):
    """A model that sees its input upsampled to `size` px first."""

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.model = model
        self.size = size

    def forward(self, x):
        return self.model(F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False))


def build(name: str, *, num_classes: int, in_channels: int, image_size: int, multilabel: bool,
          pretrained: bool | str | None = False, resize_to: int | None = None, **arguments) -> nn.Module:
    import timm

    from visionsweep.models import pretrained as weights

    size = resize_to or image_size
    if "img_size" in inspect.signature(type_of(name)).parameters:
        arguments["img_size"] = size  # vision transformers and others fixed to one input size
    options = dict(num_classes=num_classes, in_chans=in_channels, **arguments)
    if isinstance(pretrained, str) and pretrained:
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": pretrained}, **options)
    elif pretrained:
        with weights.explained(TIMM_PREFIX + name, weights.timm_cache_hint(name)):
            model = timm.create_model(name, pretrained=True, **options)
    else:
        model = timm.create_model(name, **options)
    return Resized(model, resize_to) if resize_to and resize_to != image_size else model


@functools.cache
def type_of(name: str) -> type:
    """The model's class, found by building it on the meta device: no memory, no weights."""
    import timm

    with torch.device("meta"):
        return type(timm.create_model(name))
