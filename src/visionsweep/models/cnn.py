"""A CNN configurable layer by layer: conv blocks (conv, batchnorm, activation, pooling), then a dense head.

Model-wide values (`kernel_size: 3`) apply to every layer; per-layer keys (`conv2.kernel_size: 5`,
`dense1.units: 128`) override them for one layer. A search space can sample them per layer with
`conv{i}.kernel_size: {categorical: [3, 5], repeat: n_conv}`.
"""

from typing import Literal

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from visionsweep.models._layers import Activation, Dropout, Init, choose, dense_head, initialise
from visionsweep.models._layers import activation as make_activation
from visionsweep.models._registry import register

POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, "none": None}
CONV_FIELDS = ("channels", "kernel_size", "stride", "batchnorm", "pool", "activation")
DENSE_FIELDS = ("units", "dropout")


@register("cnn", layers={"conv": CONV_FIELDS, "dense": DENSE_FIELDS})
def cnn(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    multilabel: bool,
    n_conv: PositiveInt = 2,  # conv blocks
    channels: PositiveInt = 32,  # output channels of the first block
    channel_growth: PositiveFloat = 2.0,  # each block has this many times the channels of the previous
    kernel_size: PositiveInt = 3,  # pixels; padding keeps the size (before stride)
    stride: PositiveInt = 1,  # of each conv
    batchnorm: bool = True,
    pool: Literal["max", "avg", "none"] = "max",  # after each block (max and avg halve the image)
    activation: Activation = "relu",  # relu | gelu | elu | leaky_relu | silu
    n_dense: NonNegativeInt = 1,  # hidden dense layers
    dense: NonNegativeInt = 64,  # units of each hidden dense layer; 0 for none
    dropout: Dropout = 0.25,  # before each dense layer
    init: Init = "default",  # default | kaiming | xavier | orthogonal
    layers: dict | None = None,  # per-layer overrides, from keys like conv2.pool (see the module docstring)
) -> nn.Module:
    per_layer = layers or {}
    size, width_in, blocks = image_size, in_channels, []
    for index in range(1, n_conv + 1):
        conv = {
            "channels": round(channels * channel_growth ** (index - 1)),
            "kernel_size": kernel_size,
            "stride": stride,
            "batchnorm": batchnorm,
            "pool": pool,
            "activation": activation,
            **per_layer.get("conv", {}).get(index, {}),
        }
        width, kernel = conv["channels"], conv["kernel_size"]
        blocks.append(nn.Conv2d(width_in, width, kernel, stride=conv["stride"], padding=kernel // 2, bias=not conv["batchnorm"]))
        if conv["batchnorm"]:
            blocks.append(nn.BatchNorm2d(width))
        blocks.append(make_activation("cnn", conv["activation"], f"conv{index}.activation"))
        size = (size + 2 * (kernel // 2) - kernel) // conv["stride"] + 1
        pool_layer = POOLS[choose("cnn", f"conv{index}.pool", conv["pool"], POOLS)]
        if pool_layer:
            size //= 2
            blocks.append(pool_layer(2))
        if size < 1:
            raise ValueError(
                f"cnn: a {image_size}px image after {index} conv blocks is smaller than one pixel; "
                f"use fewer than {index} conv blocks, stride 1 or pool: none"
            )
        width_in = width
    dense_layers = per_layer.get("dense", {})
    hidden = [
        (dense_layers.get(i, {}).get("units", dense), dense_layers.get(i, {}).get("dropout", dropout))
        for i in range(1, (n_dense if dense else 0) + 1)
    ]
    head = dense_head("cnn", width_in * size * size, num_classes, hidden, dropout, activation)
    return initialise(nn.Sequential(*blocks, nn.Flatten(), *head), init, "cnn")
