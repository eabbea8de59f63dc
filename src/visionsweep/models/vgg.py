"""VGG-style: blocks of 3x3 convs at one width, each block ending in a 2x2 max-pool, then a small dense head."""

from pydantic import NonNegativeInt, PositiveInt
from torch import nn

from visionsweep.models._layers import Activation, Dropout, Init, dense_head, initialise
from visionsweep.models._layers import activation as make_activation
from visionsweep.models._registry import register


@register("vgg")
def vgg(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    multilabel: bool,
    blocks: PositiveInt = 3,  # each halves the image
    convs_per_block: PositiveInt = 2,
    width: PositiveInt = 32,  # channels of the first block; doubled by every later block
    max_width: PositiveInt = 256,  # channels never exceed this
    batchnorm: bool = True,
    activation: Activation = "relu",  # relu | gelu | elu | leaky_relu | silu
    dense: NonNegativeInt = 128,  # units of the hidden dense layer; 0 for none
    dropout: Dropout = 0.3,  # before each dense layer
    init: Init = "kaiming",  # default | kaiming | xavier | orthogonal
) -> nn.Module:
    if image_size >> blocks < 1:
        raise ValueError(f"vgg: {blocks} blocks halve a {image_size}px image below one pixel; use at most "
                         f"{image_size.bit_length() - 1} blocks")
    layers, channels_in = [], in_channels
    for block in range(blocks):
        channels = min(width * 2**block, max_width)
        for _ in range(convs_per_block):
            layers += [nn.Conv2d(channels_in, channels, 3, padding=1, bias=not batchnorm)]
            layers += [nn.BatchNorm2d(channels)] if batchnorm else []
            layers.append(make_activation("vgg", activation))
            channels_in = channels
        layers.append(nn.MaxPool2d(2))
    size = image_size >> blocks
    hidden = [(dense, dropout)] if dense else []
    head = dense_head("vgg", channels_in * size * size, num_classes, hidden, dropout, activation)
    return initialise(nn.Sequential(*layers, nn.Flatten(), *head), init, "vgg")
