"""Models users bring: their own by import path, timm's by name, and a family of models searched in one sweep."""

import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch

from visionsweep import models
from visionsweep.config import ConfigError, load_config, parse_config
from visionsweep.search_spaces import DefineByRun

USER_MODULE = '''
from torch import nn


def tiny_net(num_classes, in_channels, image_size, width=4, dropout=0.0):
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, num_classes))


def shaped(num_classes, in_channels, image_size, multilabel, hidden=8):
    assert multilabel is True
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, num_classes))


class Probe(nn.Module):
    def __init__(self, num_classes, in_channels, image_size, *, scale: float):
        super().__init__()
        self.scale = scale
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, num_classes))

    def forward(self, x):
        return self.net(x) * self.scale


def no_shape(width=3):
    return None


def not_a_module(num_classes, in_channels, image_size):
    return "a string"
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """`byo_user_models.py` in a folder on sys.path, as a user's own module would be."""
    name = f"byo_user_models_{tmp_path.name.replace('-', '_')}"  # unique per test: no stale sys.modules entry
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_an_import_path_model_takes_its_parameters_from_its_signature(user_module):
    path = f"{user_module}:tiny_net"
    assert models.parameters(path) == {"width": 4, "dropout": 0.0}
    model = models.create(path, num_classes=3, in_channels=1, image_size=8, width=6)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3) and model[0].out_channels == 6
    assert models.parameters(f"{user_module}:Probe") == {"scale": models.REQUIRED}  # a class: its __init__
    probe = models.create(f"{user_module}:Probe", num_classes=2, in_channels=1, image_size=4, scale=2.0)
    assert probe.scale == 2.0
    # multilabel only goes to a model that names it
    models.create(f"{user_module}:shaped", num_classes=2, in_channels=1, image_size=4, multilabel=True)


def test_an_unknown_parameter_lists_the_parameters_of_the_signature(user_module):
    with pytest.raises(ValueError, match=rf"model '{user_module}:tiny_net' has no parameter depth; allowed: width, "
                                         rf"dropout \(from the signature of {user_module}:tiny_net\)"):
        models.create(f"{user_module}:tiny_net", num_classes=2, in_channels=1, image_size=8, depth=3)
    with pytest.raises(ValueError, match="needs scale"):
        models.create(f"{user_module}:Probe", num_classes=2, in_channels=1, image_size=4)


def test_an_import_error_names_the_module_and_where_it_was_looked_for(user_module, tmp_path):
    with pytest.raises(ValueError) as error:
        models.builder("no_such_user_module.models:net")
    message = str(error.value)
    assert "no module named 'no_such_user_module'" in message
    assert f"looked in: " in message and str(tmp_path) in message and sys.path[-1] in message
    with pytest.raises(ValueError, match=rf"{user_module} \(.*\.py\) has no 'tinynet'; it defines: .*tiny_net"):
        models.builder(f"{user_module}:tinynet")
    with pytest.raises(ValueError, match="must take the keyword arguments num_classes, in_channels, image_size"):
        models.builder(f"{user_module}:no_shape")
    with pytest.raises(TypeError, match="returned str, not a torch.nn.Module"):
        models.create(f"{user_module}:not_a_module", num_classes=2, in_channels=1, image_size=4)


def test_a_module_that_fails_to_import_says_why(tmp_path, monkeypatch):
    (tmp_path / "byo_broken_models.py").write_text("import a_dependency_nobody_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="importing byo_broken_models failed: No module named 'a_dependency_nobody"):
        models.builder("byo_broken_models:net")


def test_user_code_is_the_users_file_with_its_hash_and_an_installed_package_has_its_version(user_module, tmp_path):
    code = models.user_code(f"{user_module}:tiny_net")
    assert code.unit == tmp_path / f"{user_module}.py" and len(code.sha256) == 64
    (tmp_path / f"{user_module}.py").write_text(USER_MODULE + "\n# changed\n")
    assert models.user_code(f"{user_module}:tiny_net").sha256 != code.sha256
    installed = models.user_code("torchvision.models:resnet18")
    assert installed.unit is None and installed.package_version == torchvision_version()


def torchvision_version():
    import torchvision

    return torchvision.__version__.split("+")[0]


def test_timm_models_by_name_with_their_own_arguments():
    assert {"drop_rate", "drop_path_rate", "pretrained", "resize_to"} <= set(models.parameters("timm/test_resnet"))
    model = models.create("timm/test_resnet", num_classes=3, in_channels=1, image_size=8, drop_rate=0.2)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3) and model.drop_rate == 0.2
    resized = models.create("timm/test_vit", num_classes=2, in_channels=3, image_size=8, resize_to=16)
    assert resized(torch.randn(1, 3, 8, 8)).shape == (1, 2)
    with pytest.raises(ValueError, match="'timm/test_resnett': timm .* has no model 'test_resnett'; similar: "
                                         "timm/test_resnet"):
        models.parameters("timm/test_resnett")
    with pytest.raises(ValueError, match="has no parameter dropout; allowed: pretrained, resize_to, .*drop_rate"):
        models.create("timm/test_resnet", num_classes=3, in_channels=1, image_size=8, dropout=0.2)
    assert "timm/resnet10t" in models.timm_names("resnet1*") and "timm/test_vit" not in models.timm_names("resnet*")


def test_cli_lists_timm_models_by_pattern(capsys):
    from visionsweep.cli import main

    assert main(["models", "--timm", "test_res*"]) == 0
    out = capsys.readouterr().out
    assert "timm/test_resnet" in out and "timm/test_vit" not in out


FAMILY = {
    "name": "family",
    "model": {"categorical": ["cnn", "resnet18", "timm/test_resnet"]},
    "model_params": {"resize_to": 32},  # to the models that take it: resnet18 and timm's
    "space": {
        "lr": {"loguniform": [0.01, 0.1]},
        "channels": {"categorical": [8, 16], "when": {"model": "cnn"}},
        "freeze": {"categorical": ["none", "backbone"], "when": {"model": "resnet18"}},
        "drop_path_rate": {"uniform": [0.0, 0.2], "when": {"model": "timm/test_resnet"}},
    },
    "search": {"sampler": "tpe", "trials": 4},
}


def test_a_family_of_models_is_a_searched_parameter_with_conditional_parameters():
    config = parse_config(FAMILY)
    assert config.model_choices == ["cnn", "resnet18", "timm/test_resnet"] and config.space["model"].categorical
    space = DefineByRun(config.space, config.fixed_values())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(24):
        trial = study.ask()
        values = space(trial)
        study.tell(trial, 0.0)
        seen.add(values["model"])
        own = {"cnn": "channels", "resnet18": "freeze", "timm/test_resnet": "drop_path_rate"}
        assert {k for k in own.values() if k in values} == {own[values["model"]]}
        recipe, params = config.trial_settings(values)
        assert config.trial_model(values) == values["model"] and "model" not in params
        assert ("resize_to" in params) == (values["model"] != "cnn")  # model_params go where they are taken
        models.check_params(values["model"], params)
    assert seen == set(config.model_choices)
    again = parse_config(config.model_dump(mode="json", exclude_defaults=True))  # as `submit` uploads it
    assert again.model_choices == config.model_choices


@pytest.mark.parametrize("change, message", [
    ({"space": {"channels": {"categorical": [8, 16]}}},
     r"parameter 'channels' is .* nor a parameter of model 'resnet18' .*give it `when: \{model: NAME\}`"),
    ({"space": {"channels": {"categorical": [8], "when": {"model": "vgg"}}}},
     r"space.channels: when model is 'vgg', which is not among the models searched \(cnn, resnet18"),
    ({"model_params": {"depth": 3}}, r"parameter 'depth' is .* nor a parameter of model 'cnn' \(n_conv.*\) or 'resnet18' \(pretrained"),
    ({"model": {"categorical": ["cnn", "timm/no_such_net"]}}, r"timm .* has no model 'no_such_net'"),
    ({"model": {"uniform": [0, 1]}}, r"a family of models is \{categorical: \[NAME, ...\]\}"),
    ({"space": {"model": {"categorical": ["cnn"]}}}, "model is searched twice"),
])
def test_family_mistakes_are_config_errors(change, message):
    raw = {"name": "family", "model": {"categorical": ["cnn", "resnet18"]}, "model_params": {"resize_to": 32}, **change}
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_a_sweep_of_an_import_path_model_checks_its_parameters_before_anything_starts(user_module):
    config = parse_config({"name": "byo", "model": f"{user_module}:tiny_net",
                           "space": {"width": {"categorical": [4, 8]}}, "model_params": {"dropout": 0.1}})
    assert config.trial_settings({"width": 8})[1] == {"dropout": 0.1, "width": 8}
    with pytest.raises(ConfigError, match=r"nor a parameter of model .*tiny_net.* \(width, dropout \(from the signature"):
        parse_config({"name": "byo", "model": f"{user_module}:tiny_net", "space": {"depth": {"int": [1, 3]}}})
    with pytest.raises(ConfigError, match=r"needs scale .*: set it in model_params or space"):
        parse_config({"name": "byo", "model": f"{user_module}:Probe"})
    with pytest.raises(ConfigError, match="no module named 'not_a_user_module'; looked in: "):
        parse_config({"name": "byo", "model": "not_a_user_module:net"})


def test_pretrained_weights_load_from_the_libraries_caches_without_a_network(tmp_path):
    """torchvision's enum file in TORCH_HOME, timm's safetensors in the Hugging Face cache: both read, not fetched."""
    import subprocess

    script = textwrap.dedent(PRETRAINED_SCRIPT)
    env = {**__import__("os").environ, "TORCH_HOME": str(tmp_path / "torch"), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": ":".join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line for line in done.stdout.split() if line.endswith("-ok")] == ["missing-ok", "torchvision-ok", "timm-ok"]


PRETRAINED_SCRIPT = '''
import os, sys
import torch, torchvision
from safetensors.torch import save_file
from visionsweep import models

home = sys.argv[1]
shape = dict(num_classes=3, in_channels=3, image_size=32)

# Nothing cached: the error names the file and the exact path each library reads first.
enum = torchvision.models.ResNet18_Weights.DEFAULT
expected = os.path.join(home, "torch", "hub", "checkpoints", os.path.basename(enum.url))
for name, where in (("resnet18", expected), ("timm/test_resnet", os.path.join(home, "hf", "hub",
                    "models--timm--test_resnet.r160_in1k", "snapshots", "<revision>", "model.safetensors"))):
    try:
        models.create(name, **shape, pretrained=True)
        raise SystemExit(f"{name}: no error without cached weights")
    except models.WeightsUnavailable as err:
        assert where in str(err), (where, str(err))
print("missing-ok")

# torchvision: the enum's file in TORCH_HOME/hub/checkpoints.
source = torchvision.models.resnet18(weights=None)
os.makedirs(os.path.dirname(expected), exist_ok=True)
torch.save(source.state_dict(), expected)
model = models.create("resnet18", **shape, pretrained=True)
assert torch.equal(model.extractors[0].net.conv1.weight, source.conv1.weight)
print("torchvision-ok")

# timm: model.safetensors in the Hugging Face hub cache layout (refs/main names the snapshot).
import timm
repo = os.path.join(home, "hf", "hub", "models--timm--test_resnet.r160_in1k")
revision = "0123456789abcdef0123456789abcdef01234567"
os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
os.makedirs(os.path.join(repo, "snapshots", revision), exist_ok=True)
open(os.path.join(repo, "refs", "main"), "w").write(revision)
weights = timm.create_model("test_resnet").state_dict()
save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(repo, "snapshots", revision, "model.safetensors"))
model = models.create("timm/test_resnet", **shape, pretrained=True)
assert torch.equal(model.conv1[0].weight, weights["conv1.0.weight"])
assert model.get_classifier().out_features == 3
print("timm-ok")
'''


EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.yaml")), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_sweep_file_is_valid_from_its_folder(path, monkeypatch):
    monkeypatch.chdir(path.parent)  # examples/byo/byo.yaml finds my_models.py in the working directory
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        load_config(path)
    finally:
        sys.modules.pop("my_models", None)


def test_a_submitted_job_carries_the_users_model_code(user_module, tmp_path):
    from visionsweep.orchestrator._submit import job_runtime_env

    config = parse_config({"name": "byo", "model": {"categorical": ["cnn", f"{user_module}:tiny_net"]}})
    modules = job_runtime_env(config, str(tmp_path))["py_modules"]
    assert modules[0].endswith("visionsweep") and modules[1:] == [str(tmp_path / f"{user_module}.py")]
