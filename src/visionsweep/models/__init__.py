"""Models, found by name: `create("cnn", num_classes=10, in_channels=1, image_size=8)`.

Adding a model is one decorated function in one module of this package; `tests/unit/test_models.py`
runs every registered entry.
"""

from visionsweep.models._registry import (
    accepts,
    allowed_text,
    check_params,
    create,
    layer_parameters,
    names,
    parameters,
    register,
    without_pretrained,
)

# Each import registers its models.
from visionsweep.models import backbones, cnn, mlp, resnet_inception, vgg  # noqa: E402,F401

__all__ = [
    "accepts",
    "allowed_text",
    "check_params",
    "create",
    "layer_parameters",
    "names",
    "parameters",
    "register",
    "without_pretrained",
]
