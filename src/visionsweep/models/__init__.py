"""Models, found by name: `create("cnn", num_classes=10, in_channels=1, image_size=8)`.

A name is a registered model (`names()`), `timm/NAME` for any timm model, or `pkg.module:function` for your
own (models/imported.py). Adding a model to the registry is one decorated function in one module of this
package; `tests/unit/test_models.py` runs every registered entry.
"""

from visionsweep.models._registry import (
    REQUIRED,
    TIMM_PREFIX,
    Builder,
    accepts,
    allowed_text,
    builder,
    check_params,
    create,
    is_import_path,
    is_pretrained_path,
    layer_parameters,
    missing_params,
    names,
    parameters,
    register,
    without_pretrained,
)
from visionsweep.models.imported import UserCode, copy_code, is_beside, user_code
from visionsweep.models.pretrained import WeightsUnavailable
from visionsweep.models.timm_models import names as timm_names

# Each import registers its models.
from visionsweep.models import backbones, cnn, mlp, resnet_inception, vgg  # noqa: E402,F401

__all__ = [
    "REQUIRED",
    "TIMM_PREFIX",
    "Builder",
    "UserCode",
    "WeightsUnavailable",
    "accepts",
    "allowed_text",
    "builder",
    "check_params",
    "copy_code",
    "is_beside",
    "create",
    "is_import_path",
    "is_pretrained_path",
    "layer_parameters",
    "missing_params",
    "names",
    "parameters",
    "register",
    "timm_names",
    "user_code",
    "without_pretrained",
]
