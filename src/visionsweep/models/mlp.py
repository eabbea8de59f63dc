"""A multilayer perceptron on the flattened image: the baseline every CNN should beat."""

from pydantic import NonNegativeInt, PositiveInt
from torch import nn

from visionsweep.models._layers import Activation, Dropout, Init, dense_head, initialise
from visionsweep.models._registry import register


@register("mlp", layers={"dense": ("units", "dropout")})
def mlp(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    multilabel: bool,
    n_dense: NonNegativeInt = 2,  # hidden layers
    dense: PositiveInt = 256,  # units of each hidden layer
    dropout: Dropout = 0.2,  # before each layer
    activation: Activation = "relu",  # relu | gelu | elu | leaky_relu | silu
    init: Init = "default",  # default | kaiming | xavier | orthogonal
    layers: dict | None = None,  # per-layer overrides: dense{i}.units, dense{i}.dropout
) -> nn.Module:
    per_layer = (layers or {}).get("dense", {})
    hidden = [
        (per_layer.get(i, {}).get("units", dense), per_layer.get(i, {}).get("dropout", dropout))
        for i in range(1, n_dense + 1)
    ]
    head = dense_head("mlp", in_channels * image_size * image_size, num_classes, hidden, dropout, activation)
    return initialise(nn.Sequential(nn.Flatten(), *head), init, "mlp")
