"""Named spaces: a sweep composes them, `space: [cnn_architecture, regularization, sgd]`, plus its own overrides.

Each is one `register` call holding what a YAML `space` would. `models` says which models it fits (its
parameters are theirs); None fits any model (only train settings).
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NamedSpace:
    name: str
    description: str
    space: dict[str, dict[str, Any]]  # parameter -> distribution, as in YAML
    models: tuple[str, ...] | None = None  # the models whose parameters it samples; None: any model


_SPACES: dict[str, NamedSpace] = {}


def register(name: str, description: str, space: dict, models: tuple[str, ...] | None = None) -> None:
    if name in _SPACES:
        raise ValueError(f"space {name!r} is registered twice")
    _SPACES[name] = NamedSpace(name, description, space, models)


def names() -> list[str]:
    return sorted(_SPACES)


def get(name: str) -> NamedSpace:
    if name not in _SPACES:
        raise ValueError(f"space {name!r} is not a named space; allowed: {', '.join(names())}")
    return _SPACES[name]


def compose(space) -> dict:
    """A mapping stays as it is; a list of names and mappings is merged in order (later wins, null removes)."""
    if not isinstance(space, list):
        return space
    merged: dict = {}
    for entry in space:
        if isinstance(entry, str):
            merged.update(get(entry).space)
        elif isinstance(entry, dict):
            merged.update(entry)
        else:
            raise ValueError(f"space entries are named spaces or mappings of parameters; got {entry!r}")
    return {name: distribution for name, distribution in merged.items() if distribution is not None}


SMALL_CNNS = ("cnn", "mlp", "vgg", "resnet_inception")
BACKBONES = ("mobilenet_v3_small", "resnet18", "resnet34", "resnet50", "wide_resnet50_2", "resnext50_32x4d",
             "resnext101_32x8d", "densenet121", "densenet201", "mobilenet_v3_large", "efficientnet_b0")

# Layer counts stop where an 8 px image (digits) still has a pixel left after pooling.
register("cnn_architecture", "the whole CNN, layer by layer: conv blocks and dense head", {
    "n_conv": {"int": [1, 3]},
    "conv{i}.channels": {"categorical": [16, 32, 64], "repeat": "n_conv"},
    "conv{i}.kernel_size": {"categorical": [3, 5], "repeat": "n_conv"},
    "conv{i}.batchnorm": {"categorical": [True, False], "repeat": "n_conv"},
    "conv{i}.pool": {"categorical": ["max", "avg", "none"], "repeat": "n_conv"},
    "conv{i}.activation": {"categorical": ["relu", "gelu", "elu", "leaky_relu"], "repeat": "n_conv"},
    "n_dense": {"int": [0, 2]},
    "dense{i}.units": {"categorical": [32, 64, 128], "repeat": "n_dense"},
    "init": {"categorical": ["default", "kaiming", "xavier"]},
}, models=("cnn",))
register("mlp_architecture", "hidden layers and their widths", {
    "n_dense": {"int": [1, 3]},
    "dense{i}.units": {"categorical": [64, 128, 256, 512], "repeat": "n_dense"},
    "activation": {"categorical": ["relu", "gelu", "elu"]},
}, models=("mlp",))
register("vgg_architecture", "VGG blocks x convs per block x width, small dense head", {
    "blocks": {"int": [1, 3]},
    "convs_per_block": {"int": [1, 3]},
    "width": {"categorical": [16, 32, 64]},
    "batchnorm": {"categorical": [True, False]},
    "dense": {"categorical": [0, 64, 128]},
}, models=("vgg",))
register("resnet_inception_architecture", "ResNet or Inception blocks, stages, widths, shortcuts", {
    "block": {"categorical": ["resnet", "inception", "mixed"]},
    "n_stages": {"int": [1, 3]},
    "blocks_per_stage": {"int": [1, 2]},
    "width": {"categorical": [16, 32, 64]},
    "shortcut": {"categorical": ["auto", "projection", "none"]},
}, models=("resnet_inception",))
register("transfer", "fine-tune or freeze a torchvision backbone; hidden head", {
    "freeze": {"categorical": ["none", "backbone", "all_but_last_n"]},
    "unfreeze_last_n": {"int": [1, 3], "when": {"freeze": "all_but_last_n"}},
    "head_units": {"categorical": [0, 128, 256]},
    "head_dropout": {"uniform": [0.0, 0.5]},
}, models=BACKBONES)
register("regularization", "dropout, weight decay, label smoothing", {
    "dropout": {"uniform": [0.0, 0.5]},
    "weight_decay": {"loguniform": [1.0e-6, 1.0e-2]},
    "label_smoothing": {"uniform": [0.0, 0.2]},
}, models=("cnn", "mlp", "vgg", "resnet_inception"))
register("sgd", "SGD with (Nesterov) momentum and a one-cycle, cosine or step schedule", {
    "optimizer": {"categorical": ["sgd"]},
    "lr": {"loguniform": [1.0e-3, 0.3]},
    "momentum": {"uniform": [0.8, 0.99]},
    "nesterov": {"categorical": [True, False]},
    "schedule": {"categorical": ["onecycle", "cosine", "step"]},
})
register("adam", "Adam, AdamW (decoupled weight decay) or AMSGrad with a cosine or one-cycle schedule", {
    "optimizer": {"categorical": ["adam", "adamw", "amsgrad"]},
    "lr": {"loguniform": [1.0e-4, 1.0e-2]},
    "schedule": {"categorical": ["cosine", "onecycle"]},
})
register("optimizers", "every optimizer, momentum only where it applies", {
    "optimizer": {"categorical": ["sgd", "adam", "adamw", "amsgrad", "rmsprop"]},
    "lr": {"loguniform": [1.0e-4, 0.3]},
    "momentum": {"uniform": [0.8, 0.99], "when": {"optimizer": ["sgd", "rmsprop"]}},
    "nesterov": {"categorical": [True, False], "when": {"optimizer": "sgd"}},
})
register("schedules", "every schedule with its own settings, warm-up where it applies", {
    "schedule": {"categorical": ["constant", "cosine", "onecycle", "cyclic", "step", "plateau"]},
    "warmup_epochs": {"categorical": [0, 1], "when": {"schedule": ["constant", "cosine", "cyclic", "step", "plateau"]}},
    "cycle_epochs": {"categorical": [1, 2, 4], "when": {"schedule": "cyclic"}},
    "step_gamma": {"categorical": [0.1, 0.3, 0.5], "when": {"schedule": "step"}},
    "plateau_patience": {"int": [1, 3], "when": {"schedule": "plateau"}},
})
register("losses", "cross-entropy, BCE, MSE, focal or asymmetric loss, label smoothing", {
    "loss": {"categorical": ["cross_entropy", "bce", "mse", "focal", "asymmetric"]},
    "label_smoothing": {"uniform": [0.0, 0.2]},
})
register("imbalance", "rare labels (multi-label): BCE, focal or asymmetric loss, balanced weights, oversampling", {
    "loss": {"categorical": ["bce", "focal", "asymmetric"]},
    "focal_gamma": {"uniform": [0.5, 4.0], "when": {"loss": "focal"}},
    "asl_gamma_neg": {"uniform": [1.0, 6.0], "when": {"loss": "asymmetric"}},
    "asl_clip": {"categorical": [0.0, 0.05, 0.1], "when": {"loss": "asymmetric"}},
    "class_weights": {"categorical": ["none", "balanced"]},
    "oversample": {"uniform": [0.0, 1.0]},
})
