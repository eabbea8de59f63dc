"""Models, found by name: `create("cnn", num_classes=10, in_channels=1, image_size=8)`.

A name is a registered model (`names()`), `timm/NAME` for any timm model, or `pkg.module:function` for your
own (models/imported.py). Adding a model to the registry is one decorated function in one module of this
package; `tests/unit/test_models.py` runs every registered entry. A trained model is saved and loaded, and
images become its input, through models/trained.py, in training and serving alike.
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
from visionsweep.models.trained import (
    ModelSpec,
    Normalization,
    TrainedModel,
    channels_first,
    load_trained,
    save_trained,
    unit_scale,
)

# Each import registers its models.
from visionsweep.models import backbones, cnn, mlp, resnet_inception, vgg  # noqa: E402,F401

__all__ = [
    "REQUIRED",
    "TIMM_PREFIX",
    "Builder",
    "ModelSpec",
    "Normalization",
    "TrainedModel",
    "UserCode",
    "WeightsUnavailable",
    "accepts",
    "allowed_text",
    "builder",
    "channels_first",
    "check_params",
    "copy_code",
    "is_beside",
    "create",
    "is_import_path",
    "is_pretrained_path",
    "layer_parameters",
    "load_trained",
    "missing_params",
    "names",
    "parameters",
    "register",
    "save_trained",
    "timm_names",
    "unit_scale",
    "user_code",
    "without_pretrained",
]
