"""A trained model's folder (models.save_trained / load_trained) and the one image -> input conversion that
training and serving share."""

import json
import sys

import numpy as np
import torch

from visionsweep import models
from visionsweep.data.augment import AugmentConfig, Augmenter
from visionsweep.record import MODEL_SPEC_FILE, WEIGHTS_FILE
from visionsweep.registry._pyfunc import Member
from visionsweep.trainables.classifier import Preprocess

SHAPE = {"num_classes": 3, "in_channels": 2, "image_size": 8, "multilabel": False}
NORMALIZATION = {"mean": [0.25, 0.5], "std": [0.5, 0.125]}


def saved(tmp_path, model_name: str, params: dict):
    """A model as a trial leaves it (a state_dict file), saved as a trained model's folder."""
    torch.manual_seed(0)
    model = models.create(model_name, **SHAPE, **params)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    spec = models.ModelSpec(model_name, params, SHAPE, ["a", "b", "c"], NORMALIZATION)
    models.save_trained(tmp_path / "trained", tmp_path / "model.pt", spec)
    return model.eval(), tmp_path / "trained"


def images(count: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 8, 8, 2), dtype=np.uint8)


def test_a_saved_model_loads_back_with_its_weights_and_spec_in_the_file_format_artifacts_have(tmp_path):
    original, folder = saved(tmp_path, "cnn", {"dropout": 0.25})
    assert sorted(p.name for p in folder.iterdir()) == sorted([WEIGHTS_FILE, MODEL_SPEC_FILE])
    # The format trial runs have always logged: older artifacts load as these do.
    assert json.loads((folder / MODEL_SPEC_FILE).read_text()) == {
        "model": "cnn", "params": {"dropout": 0.25}, "shape": SHAPE, "classes": ["a", "b", "c"],
        "normalization": NORMALIZATION}
    trained = models.load_trained(folder)
    assert trained.spec == models.ModelSpec("cnn", {"dropout": 0.25}, SHAPE, ["a", "b", "c"], NORMALIZATION)
    assert not trained.model.training
    x = trained.inputs(images())
    assert torch.equal(trained.model(x), original(x))


def test_training_and_serving_make_the_same_input_from_the_same_images(tmp_path):
    _, folder = saved(tmp_path, "mlp", {})
    pixels = images()
    expected = (torch.tensor(pixels / 255.0, dtype=torch.float32).permute(0, 3, 1, 2)
                - torch.tensor([0.25, 0.5])[:, None, None]) / torch.tensor([0.5, 0.125])[:, None, None]
    preprocess = Preprocess(NORMALIZATION, Augmenter(AugmentConfig(), 8, 3, False), torch.device("cpu"))
    training_batch, _ = preprocess.batch(models.channels_first(pixels), torch.zeros(5, dtype=torch.long))
    served = Member(folder)
    for made in (training_batch, preprocess.images(pixels), served.inputs(pixels)):
        assert made.shape == (5, 2, 8, 8)
        torch.testing.assert_close(made, expected)
    assert torch.equal(training_batch, served.inputs(pixels)) and torch.equal(preprocess.images(pixels), training_batch)


USER_MODULE = '''
from torch import nn


def net(num_classes, in_channels, image_size, width=4):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, width), nn.Linear(width, num_classes))
'''


def test_a_users_model_takes_its_code_along_and_loads_from_that_copy(tmp_path, monkeypatch):
    name = f"trained_user_models_{tmp_path.name.replace('-', '_')}"  # unique per test: no stale sys.modules entry
    source = tmp_path / "src"
    source.mkdir()
    (source / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(source))  # restores sys.path afterwards, the copy's folder too
    original, folder = saved(tmp_path, f"{name}:net", {"width": 6})
    spec = models.ModelSpec.read(folder)
    assert spec.code == {"path": f"code/{name}.py", "sha256": models.user_code(f"{name}:net").sha256}
    # Elsewhere: the user's own folder is gone, only the copy in the trained model's folder is left.
    sys.path.remove(str(source))
    del sys.modules[name]
    try:
        trained = models.load_trained(folder)
        assert sys.modules[name].__file__ == str(folder / "code" / f"{name}.py")
    finally:
        sys.modules.pop(name, None)
    x = trained.inputs(images())
    assert torch.equal(trained.model(x), original(x))
