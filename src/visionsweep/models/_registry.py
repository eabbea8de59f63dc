import inspect
import re
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

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_LAYERS: dict[str, dict[str, tuple[str, ...]]] = {}


def register(name: str, layers: dict[str, tuple[str, ...]] | None = None):
    def decorator(builder):
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        signature = inspect.signature(builder).parameters
        missing = [a for a in SHAPE_ARGS + (("layers",) if layers else ()) if a not in signature]
        if missing:
            raise TypeError(f"model builder {name!r} must accept {', '.join(missing)}")
        _BUILDERS[name] = builder
        _LAYERS[name] = layers or {}
        return builder

    return decorator


def names() -> list[str]:
    return sorted(_BUILDERS)


def parameters(name: str) -> dict[str, Any]:
    """A model's own parameters and their defaults (what `space` and `model_params` may set)."""
    signature = inspect.signature(_BUILDERS[name])
    return {k: p.default for k, p in signature.parameters.items() if k not in SHAPE_ARGS + ("layers",)}


def layer_parameters(name: str) -> dict[str, tuple[str, ...]]:
    """Per-layer parameters: {"conv": ("channels", ...)} means `conv1.channels`, `conv{i}.channels`, ..."""
    return _LAYERS[name]


def accepts(name: str, param: str) -> bool:
    """Whether model `name` takes `param`: one of its parameters, or a per-layer key like conv2.stride or conv{i}.stride."""
    if param in parameters(name):
        return True
    match = LAYER_KEY.match(param)
    return bool(match) and match["field"] in _LAYERS[name].get(match["kind"], ())


def allowed_text(name: str) -> str:
    per_layer = [f"{kind}{{i}}.{field}" for kind, fields in _LAYERS[name].items() for field in fields]
    return ", ".join([*parameters(name), *per_layer]) or "none"


def check_params(name: str, params: dict[str, Any]) -> None:
    """Raises ValueError for a parameter the model lacks, a value its type or range refuses (per-layer keys
    take the type of the model-wide parameter of their name), or a `pretrained` file that is not there."""
    if name not in _BUILDERS:
        raise ValueError(f"model {name!r} is not registered; allowed: {', '.join(names())}")
    unknown = sorted(p for p in params if not accepts(name, p))
    if unknown:
        raise ValueError(f"model {name!r} has no parameter {', '.join(unknown)}; allowed: {allowed_text(name)}")
    for key, value in params.items():
        match = LAYER_KEY.match(key)
        problem = value_problem(_BUILDERS[name], match["field"] if match else key, value)
        if problem:
            raise ValueError(f"model {name!r}: {key} = {value!r}: {problem}")
        if is_pretrained_path(key):
            check_weights_file(name, value)


def is_pretrained_path(key: str) -> bool:
    """`pretrained` and `<backbone>_pretrained`: paths of local starting weights."""
    return key == "pretrained" or key.endswith("_pretrained")


def without_pretrained(params: dict[str, Any]) -> dict[str, Any]:
    """Params to rebuild a trained model: its own weights replace the starting weights, whose file may be gone."""
    return {k: v for k, v in params.items() if not is_pretrained_path(k)}


def check_weights_file(name: str, path) -> None:
    if path and not Path(path).is_file():
        raise ValueError(
            f"model {name!r}: pretrained weights file {str(path)!r} does not exist; give the path of a local "
            "state dict (saved with torch.save(model.state_dict(), path)); weights are never downloaded"
        )


def create(
    name: str, *, num_classes: int, in_channels: int, image_size: int, multilabel: bool = False, **params
) -> nn.Module:
    """Builds a registered model whose forward maps (B, C, H, W) floats to (B, num_classes) logits."""
    check_params(name, params)
    own = {k: v for k, v in params.items() if k in parameters(name)}
    if _LAYERS[name]:
        own["layers"] = _group_layers({k: v for k, v in params.items() if k not in own})
    return _BUILDERS[name](
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, multilabel=multilabel, **own
    )


def _group_layers(flat: dict[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    grouped: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in flat.items():
        match = LAYER_KEY.match(key)
        grouped.setdefault(match["kind"], {}).setdefault(int(match["index"]), {})[match["field"]] = value
    return grouped
