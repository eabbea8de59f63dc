"""A trained model on disk, and the one way uint8 images become a model's input, in training and in serving.

A trained model is a folder (names in visionsweep.record): WEIGHTS_FILE, the model's state_dict, and
MODEL_SPEC_FILE, a `ModelSpec` as JSON: what rebuilds the model (its name, params and the data's shape), its
classes and the normalisation it was trained with. A user's model whose code is its own, not an installed
package, carries a copy of that code in MODEL_CODE_FOLDER, so that it rebuilds anywhere.

    save_trained(folder, weights_file, ModelSpec(...))
    trained = load_trained(folder)  # built, weights loaded with weights_only=True, in eval mode
    logits = trained.model(trained.inputs(images))  # images: uint8 (N, H, W, C)
"""

import json
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from visionsweep.models._registry import create, is_import_path, without_pretrained
from visionsweep.models.imported import copy_code, user_code
from visionsweep.record import MODEL_CODE_FOLDER, MODEL_SPEC_FILE, WEIGHTS_FILE


def channels_first(images: np.ndarray, device=None) -> torch.Tensor:
    """uint8 images (N, H, W, C) -> a uint8 tensor (N, C, H, W) on `device`."""
    # A copy: the images may be a read-only view (a memory-mapped dataset), which torch will not share.
    return torch.as_tensor(np.array(images), device=device).permute(0, 3, 1, 2)


def unit_scale(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> floats in 0..1: the scale augmentation and normalisation work on."""
    return images.float().div_(255)


class Normalization:
    """Per-channel mean and std on the 0..1 scale ({"mean": [...], "std": [...]}, one value per channel).

    The tensors are made once, on `device`: a copy to a GPU per batch would wait for it.
    """

    def __init__(self, stats: dict[str, list[float]], device=None):
        self.mean = torch.tensor(stats["mean"], device=device)[:, None, None]
        self.std = torch.tensor(stats["std"], device=device)[:, None, None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """0..1 floats (N, C, H, W) -> normalised."""
        return (x - self.mean) / self.std

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, C) -> a model's input: normalised floats (N, C, H, W) on this normalisation's device."""
        return self(unit_scale(channels_first(images, self.mean.device)))


@dataclass(frozen=True)
class ModelSpec:
    """What a trained model's weights need beside them: MODEL_SPEC_FILE, one JSON object with these keys."""

    model: str  # a registered name, timm/NAME or pkg.module:function
    params: dict  # the builder's own keyword arguments
    shape: dict  # num_classes, in_channels, image_size, multilabel: what `create` needs to know of the data
    classes: list[str]
    normalization: dict[str, list[float]]  # per-channel mean and std on the 0..1 scale
    code: dict | None = None  # a user's model: "path" of the copy of its code in the folder, and its "sha256"

    @classmethod
    def read(cls, folder: Path) -> "ModelSpec":
        return cls(**json.loads((Path(folder) / MODEL_SPEC_FILE).read_text()))

    def write(self, folder: Path) -> None:
        fields = {key: value for key, value in asdict(self).items() if key != "code" or value is not None}
        (Path(folder) / MODEL_SPEC_FILE).write_text(json.dumps(fields, indent=1))


@dataclass
class TrainedModel:
    """A trained model ready to predict: the model in eval mode, its spec, and its input conversion."""

    model: torch.nn.Module
    spec: ModelSpec
    normalization: Normalization

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, C) -> the model's input (N, C, H, W), normalised as in training."""
        return self.normalization.inputs(images)


def save_trained(folder: Path, weights_file: Path, spec: ModelSpec | None) -> None:
    """Writes a trained model's folder (which must not exist): a copy of `weights_file` (a saved state_dict) and
    the spec, with a copy of a user's own model code. Without a spec (a training function's own model, with no
    builder named for it) only the weights are kept: nothing could rebuild the model around them."""
    folder = Path(folder)
    folder.mkdir()
    shutil.copyfile(weights_file, folder / WEIGHTS_FILE)
    if spec is None:
        return
    if is_import_path(spec.model) and (code := user_code(spec.model)).unit is not None:
        copied = copy_code(code.unit, folder / MODEL_CODE_FOLDER)
        spec = replace(spec, code={"path": str(copied.relative_to(folder)), "sha256": code.sha256})
    spec.write(folder)


def load_trained(folder: Path) -> TrainedModel:
    """The trained model a folder holds (see `save_trained`): built from its spec, its weights loaded with
    weights_only=True (no pickled code runs), in eval mode."""
    folder = Path(folder)
    spec = ModelSpec.read(folder)
    if spec.code and is_import_path(spec.model):
        # A user's model: the copy of its code the trial ran with (a promoted model also has it on sys.path
        # through MLflow's code_paths; a trial's model loaded for a report has only this copy).
        root = str(folder / Path(spec.code["path"]).parent)
        if root not in sys.path:
            sys.path.append(root)
    model = create(spec.model, **spec.shape, **without_pretrained(spec.params))
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True))
    return TrainedModel(model.eval(), spec, Normalization(spec.normalization))
