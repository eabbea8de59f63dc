import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from visionsweep.models._values import value_problem

# A builder takes the data's shape as keywords, then its own parameters with defaults:
#   def cnn(*, num_classes, in_channels, image_size, multilabel, channels=32, ..., layers=None) -> nn.Module
# A builder registered with `layers={"conv": (...)}` also accepts per-layer values such as `conv2.kernel_size`
# (layers numbered from 1); create() hands them over grouped as layers={"conv": {2: {"kernel_size": 5}}}.
SHAPE_ARGS = ("num_classes", "in_channels", "image_size", "multilabel")
LAYER_KEY = re.compile(r"^(?P<kind>[a-z_]+)(?P<index>\d+|\{i\})\.(?P<field>\w+)$")  # conv3.channels, conv{i}.channels
TIMM_PREFIX = "timm/"  # timm/NAME: any of timm.list_models()
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")  # pkg.module:function
REQUIRED = inspect.Parameter.empty  # the default of a parameter the config must set


@dataclass(frozen=True)
class Builder:
    """How to build one model: the function, its own parameters with their defaults, and what it takes."""

    name: str
    build: Callable[..., nn.Module]
    parameters: dict[str, Any]  # name -> default (REQUIRED where none)
    layers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per-layer parameters, see register()
    shape_args: tuple[str, ...] = SHAPE_ARGS  # the shape keywords it takes
    any_parameter: bool = False  # it takes **params: any name is accepted
    where: str = ""  # what the parameters were read from, for error messages


_BUILDERS: dict[str, Builder] = {}


def register(name: str, layers: dict[str, tuple[str, ...]] | None = None):
    def decorator(builder):
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        signature = inspect.signature(builder).parameters
        missing = [a for a in SHAPE_ARGS + (("layers",) if layers else ()) if a not in signature]
        if missing:
            raise TypeError(f"model builder {name!r} must accept {', '.join(missing)}")
        own = {k: p.default for k, p in signature.items() if k not in SHAPE_ARGS + ("layers",)}
        _BUILDERS[name] = Builder(name, builder, own, layers or {})
        return builder

    return decorator


def names() -> list[str]:
    """The registered models (besides them: timm/NAME and pkg.module:function)."""
    return sorted(_BUILDERS)


def builder(name: str) -> Builder:
    """The builder of a registered name, `timm/NAME` or an import path `pkg.module:function`; ValueError if none."""
    if name in _BUILDERS:
        return _BUILDERS[name]
    if name.startswith(TIMM_PREFIX):
        from visionsweep.models import timm_models

        return timm_models.builder(name.removeprefix(TIMM_PREFIX))
    if IMPORT_PATH.match(name):
        from visionsweep.models import imported

        return imported.builder(name)
    raise ValueError(
        f"model {name!r} is not registered; allowed: {', '.join(names())}; or timm/NAME for a timm model "
        "(`visionsweep models --timm PATTERN` lists them); or pkg.module:function for your own"
    )


def is_import_path(name: str) -> bool:
    """Whether `name` is a user's model by import path, `pkg.module:function`."""
    return name not in _BUILDERS and bool(IMPORT_PATH.match(name))


def parameters(name: str) -> dict[str, Any]:
    """A model's own parameters and their defaults (what `space` and `model_params` may set)."""
    return dict(builder(name).parameters)


def layer_parameters(name: str) -> dict[str, tuple[str, ...]]:
    """Per-layer parameters: {"conv": ("channels", ...)} means `conv1.channels`, `conv{i}.channels`, ..."""
    return builder(name).layers


def accepts(name: str, param: str) -> bool:
    """Whether model `name` takes `param`: one of its parameters, or a per-layer key like conv2.stride or conv{i}.stride."""
    found = builder(name)
    if param in found.parameters or found.any_parameter:
        return True
    match = LAYER_KEY.match(param)
    return bool(match) and match["field"] in found.layers.get(match["kind"], ())


def allowed_text(name: str) -> str:
    found = builder(name)
    per_layer = [f"{kind}{{i}}.{field}" for kind, fields in found.layers.items() for field in fields]
    text = ", ".join([*found.parameters, *per_layer]) or "none"
    return f"{text} (from {found.where})" if found.where else text


def check_params(name: str, params: dict[str, Any]) -> None:
    """Raises ValueError for a parameter the model lacks, a value its type or range refuses (per-layer keys
    take the type of the model-wide parameter of their name), or a `pretrained` file that is not there."""
    unknown = sorted(p for p in params if not accepts(name, p))
    if unknown:
        raise ValueError(f"model {name!r} has no parameter {', '.join(unknown)}; allowed: {allowed_text(name)}")
    for key, value in params.items():
        match = LAYER_KEY.match(key)
        problem = value_problem(builder(name).build, match["field"] if match else key, value)
        if problem:
            raise ValueError(f"model {name!r}: {key} = {value!r}: {problem}")
        if is_pretrained_path(key):
            check_weights_file(name, value)


def missing_params(name: str, given) -> list[str]:
    """The model's parameters without a default that `given` (names) does not set."""
    return [k for k, default in builder(name).parameters.items() if default is REQUIRED and k not in given]


def is_pretrained_path(key: str) -> bool:
    """`pretrained` and `<backbone>_pretrained`: true (the library's own weights) or the path of a local file."""
    return key == "pretrained" or key.endswith("_pretrained")


def without_pretrained(params: dict[str, Any]) -> dict[str, Any]:
    """Params to rebuild a trained model: its own weights replace the starting weights, whose file may be gone."""
    return {k: v for k, v in params.items() if not is_pretrained_path(k)}


def check_weights_file(name: str, path) -> None:
    """`pretrained: PATH` must name a file; `true` (downloaded or cached weights) and `false` pass."""
    if isinstance(path, bool) or not path:
        return
    if not Path(path).is_file():
        raise ValueError(
            f"model {name!r}: pretrained weights file {str(path)!r} does not exist; give the path of a local "
            "state dict (saved with torch.save(model.state_dict(), path)), or `pretrained: true` for the "
            "library's own weights (downloaded once into its cache)"
        )


def create(
    name: str, *, num_classes: int, in_channels: int, image_size: int, multilabel: bool = False, **params
) -> nn.Module:
    """Builds a model whose forward maps (B, C, H, W) floats to (B, num_classes) logits.

    `name`: a registered model, `timm/NAME` or `pkg.module:function`.
    """
    found = builder(name)
    check_params(name, params)
    missing = missing_params(name, params)
    if missing:
        raise ValueError(f"model {name!r} needs {', '.join(missing)}: set it in model_params or space")
    own = {k: v for k, v in params.items() if k in found.parameters or (found.any_parameter and not LAYER_KEY.match(k))}
    if found.layers:
        own["layers"] = _group_layers({k: v for k, v in params.items() if k not in own})
    shape = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size, "multilabel": multilabel}
    model = found.build(**{k: v for k, v in shape.items() if k in found.shape_args}, **own)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {name!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _group_layers(flat: dict[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    grouped: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in flat.items():
        match = LAYER_KEY.match(key)
        grouped.setdefault(match["kind"], {}).setdefault(int(match["index"]), {})[match["field"]] = value
    return grouped
