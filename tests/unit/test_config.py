import pytest

from visionsweep.config import ConfigError, SweepConfig, load_config, parse_config, resolve_tracking_uri

VALID = {"name": "t", "space": {"lr": {"loguniform": [1e-3, 1e-1]}}}


def merged(**sections):
    raw = {**VALID}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return raw


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"space": {}}, "name: required but missing"),
        (merged(name=""), "name = '': String should have at least 1 character"),
        (merged(data={"val_fraction": 1.5}), "data.val_fraction = 1.5: Input should be less than 1"),
        (merged(data={"val_fraction": 0.5, "test_fraction": 0.45}), "val_fraction + test_fraction = 0.95"),
        (merged(data={"dataset": "cifar99"}), "data.dataset 'cifar99' is neither a registered dataset (digits"),
        (merged(model="resnet9000"), "model 'resnet9000' is not registered; allowed: cnn"),
        (merged(search={"sampler": "bayes"}), "search.sampler = 'bayes': Input should be 'tpe', 'random', 'grid', 'cmaes' or 'qmc'"),
        (merged(search={"metric": "test_accuracy"}), "metric 'test_accuracy' is not reported by trials; allowed: val_accuracy"),
        (merged(search={"trials": 0}), "search.trials = 0: Input should be greater than or equal to 1"),
        (merged(scheduler={"kind": "hyperband"}), "scheduler.kind = 'hyperband': Input should be 'asha' or 'fifo'"),
        (merged(scheduler={"max_epochs": 3, "grace_period": 5}), "grace_period 5 exceeds max_epochs 3"),
        (merged(scheduler={"reduction_factor": 1}), "scheduler.reduction_factor = 1: Input should be greater than 1"),
        (merged(resources={"gpu": -1}), "resources.gpu = -1: Input should be greater than or equal to 0"),
        (merged(resources={"cpus": 2}), "resources.cpus: unknown setting; allowed here: cpu, gpu, concurrent"),
        (merged(tracking={"batch_seconds": -1}), "tracking.batch_seconds = -1: Input should be greater than or equal to 0"),
        (merged(space={"lr": {"gaussian": [0, 1]}}), "space.lr.gaussian: unknown setting; allowed here: uniform, loguniform, int, categorical"),
        (merged(space={"lr": {"loguniform": [0, 1]}}), "loguniform: low must be > 0"),
        (merged(space={"lr": {"uniform": [1, 0]}}), "uniform: low 1.0 is above high 0.0"),
        (merged(space={"lr": {"uniform": [0, 1], "int": [0, 1]}}), "give exactly one of uniform, loguniform, int, categorical"),
        (merged(space={"depth": {"int": [1, 3]}}), "parameter 'depth' is neither a train setting"),
        (merged(space=["cnn_architecture", "sdg"]), "space 'sdg' is not a named space; allowed: adam, cnn_architecture"),
        (merged(space={"momentum": {"uniform": [0.8, 0.9], "when": {"optimiser": "sgd"}}}),
         "space.momentum: condition or repeat names 'optimiser', which is neither sampled"),
        (merged(space={"conv{i}.channels": {"categorical": [8]}}), "space.conv{i}.channels: a name with {i} needs `repeat"),
        (merged(space={"a": {"int": [1, 2]}}), "parameter 'a' is neither a train setting"),
        (merged(space={"lr": {"uniform": [0.1, 0.2], "when": {"momentum": 0.9}},
                       "momentum": {"uniform": [0.8, 0.9], "when": {"lr": 0.1}}}), "the conditions form a cycle"),
        (merged(search={"sampler": "grid"}), "space.lr: the grid sampler takes int and categorical parameters only"),
        (merged(search={"strategy": "coordinate"}), "strategy coordinate needs `values`"),
        (merged(search={"strategy": "coordinate", "values": {"lr": [0.1]}}), "space is not used with strategy coordinate"),
        (merged(search={"strategy": "coordinate", "values": {"lr": [0.1]}, "order": ["lr", "dropout"]}),
         "order ['lr', 'dropout'] must list each parameter of values once"),
        (merged(model_params={"pretrained": "/nowhere/w.pt"}, model="resnet18"), "pretrained weights file '/nowhere/w.pt' does not exist"),
        (merged(train={"optimizer": "lbfgs"}), "train.optimizer = 'lbfgs': Input should be 'sgd', 'adam', 'adamw', 'amsgrad' or 'rmsprop'"),
        (merged(extra=1), "extra: unknown setting; allowed here: name, data, model"),
        (merged(final={"refit": -1}), "final.refit = -1: Input should be greater than or equal to 0"),
        (merged(final={"seeds": 0}), "final.seeds = 0: Input should be greater than or equal to 1"),
        (merged(final={"top": 3}), "final.top: unknown setting; allowed here: refit, seeds, epochs"),
    ],
)
def test_malformed_config_names_field_value_and_allowed(raw, expected):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert expected in str(caught.value)


def test_defaults_fill_everything_not_given():
    config = parse_config(VALID)
    assert config.scheduler.kind == "asha" and config.search.sampler == "tpe"
    assert config.search.mode == "max"  # val_accuracy's natural direction
    assert parse_config(merged(search={"metric": "val_loss"})).search.mode == "min"
    assert (config.final.refit, config.final.seeds, config.final.epochs) == (0, 1, None)  # no refit unless asked


def test_overrides_are_typed_by_the_schema(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("name: t\nspace: {lr: {loguniform: [0.001, 0.1]}}\n")
    config = load_config(
        path,
        ["search.trials=7", "data.val_fraction=0.2", "name=123", "space.dropout={uniform: [0, 0.5]}",
         "model_params.batchnorm=false"],
    )
    assert config.search.trials == 7 and config.data.val_fraction == 0.2
    assert config.name == "123"  # a string field keeps the text as given
    assert config.space["dropout"].uniform == (0.0, 0.5)
    assert config.model_params == {"batchnorm": False}


def test_bad_override_and_bad_file_are_config_errors(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("name: t\n")
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_config(path, ["search.trials"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_trial_settings_split_recipe_from_model_params():
    config = parse_config(merged(model_params={"channels": 8}))
    recipe, model_params = config.trial_settings({"lr": 0.2, "dropout": 0.1})
    assert recipe.lr == 0.2 and model_params == {"channels": 8, "dropout": 0.1}


def test_tracking_uri_precedence(monkeypatch):
    config = SweepConfig.model_validate({"name": "t", "tracking": {"uri": "sqlite:///c.db"}})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri("http://127.0.0.1:1", config) == "http://127.0.0.1:1"
    assert resolve_tracking_uri(None, config) == "sqlite:///c.db"
    assert resolve_tracking_uri(None, parse_config(VALID)) == "sqlite:///env.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri() == "sqlite:///mlflow.db"


def test_code_named_by_import_path_is_found_beside_the_sweep_file(tmp_path, monkeypatch):
    """As Python finds a script's neighbours: the package beside the sweep file, from any working directory (and
    on resume, from the folder the sweep run records)."""
    import sys

    from visionsweep.trainables import load_trainable

    package = tmp_path / "beside_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "code.py").write_text(
        "def train(params, trial):\n    pass\n\n\n"
        "def build(num_classes, in_channels, image_size, width=8):\n    raise NotImplementedError\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir("/")
    raw = {"name": "beside", "trainable": "beside_pkg.code:train", "model": "beside_pkg.code:build"}
    with pytest.raises(ConfigError, match="no module named 'beside_pkg'"):
        parse_config(dict(raw))
    config = parse_config(dict(raw), folder=tmp_path)
    assert config.folder == str(tmp_path) and config.model == "beside_pkg.code:build"
    train, code_folder = load_trainable(config.trainable, config.folder)
    assert train.__name__ == "train" and code_folder == str(tmp_path)
    for name in [m for m in sys.modules if m.startswith("beside_pkg")]:
        monkeypatch.delitem(sys.modules, name)
