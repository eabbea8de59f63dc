"""Pieces several models share: activations by name, weight initialisation, the dense head, parameter types."""

from typing import Annotated, Literal

from pydantic import Field
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU}
INITS = {
    "default": None,  # PyTorch's own (Kaiming-uniform with a=sqrt(5))
    "kaiming": nn.init.kaiming_normal_,
    "xavier": nn.init.xavier_uniform_,
    "orthogonal": nn.init.orthogonal_,
}

# Parameter types builders declare, so a wrong value is refused before a model is built (models/_values.py).
Activation = Literal[tuple(ACTIVATIONS)]
Init = Literal[tuple(INITS)]
Dropout = Annotated[float, Field(ge=0, lt=1)]  # probability of zeroing an input


def choose(model: str, field: str, value, allowed):
    if value not in allowed:
        raise ValueError(f"{model}: {field} {value!r}; allowed: {', '.join(map(str, allowed))}")
    return value


def activation(model: str, name: str, field: str = "activation") -> nn.Module:
    return ACTIVATIONS[choose(model, field, name, ACTIVATIONS)]()


def initialise(module: nn.Module, init: str, model: str) -> nn.Module:
    """Re-initialises every conv and linear weight with `init` (biases to zero); `default` keeps PyTorch's."""
    fill = INITS[choose(model, "init", init, INITS)]
    if fill:
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                fill(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
    return module


def dense_head(
    model: str, features: int, num_classes: int, hidden: list[tuple[int, float]], dropout: float, act: str
) -> nn.Sequential:
    """Hidden layers given as (units, dropout before it), each dropout-linear-activation; then dropout and the output."""
    layers = []
    for units, hidden_dropout in hidden:
        layers += [nn.Dropout(hidden_dropout), nn.Linear(features, units), activation(model, act)]
        features = units
    return nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(features, num_classes))
