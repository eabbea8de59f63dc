import optuna
import pytest

from visionsweep import models, search_spaces
from visionsweep.config import parse_config
from visionsweep.orchestrator import CoordinateSearch, make_sampler
from visionsweep.search_spaces import CoordinateWalk, DefineByRun
from visionsweep.task import MultiClass
from visionsweep.trainables.recipe import Fitting, make_loss

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample(config, n: int, sampler=None) -> list[dict]:
    """n configs drawn by Optuna through the sweep's define-by-run function (no Ray)."""
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    space = DefineByRun(config.space, config.fixed_values())
    drawn = []
    for _ in range(n):
        trial = study.ask()
        drawn.append(space(trial))
        study.tell(trial, 0.0)
    return drawn


@pytest.mark.parametrize("name", search_spaces.names())
def test_every_named_space_samples_100_configs_that_all_build(name):
    named = search_spaces.get(name)
    model = (named.models or ("cnn",))[0]
    size = 32 if model in models.backbones.BACKBONES else 8
    config = parse_config({"name": "t", "model": model, "space": [name]})
    for params in sample(config, 100):
        recipe, model_params = config.trial_settings(params)
        net = models.create(model, num_classes=3, in_channels=1, image_size=size, **model_params)
        Fitting(recipe, net, steps_per_epoch=5, max_epochs=3)
        make_loss(recipe, MultiClass(["a", "b", "c"]))


def test_conditional_parameters_appear_only_when_their_condition_holds():
    config = parse_config({"name": "t", "space": ["optimizers", "schedules"]})
    drawn = sample(config, 200)
    for params in drawn:
        assert ("momentum" in params) == (params["optimizer"] in ("sgd", "rmsprop"))
        assert ("nesterov" in params) == (params["optimizer"] == "sgd")
        assert ("step_gamma" in params) == (params["schedule"] == "step")
        assert ("warmup_epochs" in params) == (params["schedule"] != "onecycle")
    assert {p["optimizer"] for p in drawn} == {"sgd", "adam", "adamw", "amsgrad", "rmsprop"}


def test_a_condition_on_a_fixed_setting_reads_its_value():
    space = {"nesterov": {"categorical": [True, False], "when": {"optimizer": "sgd"}}}
    assert all("nesterov" in p for p in sample(parse_config({"name": "t", "space": space}), 5))
    adam = parse_config({"name": "t", "space": space, "train": {"optimizer": "adam"}})
    assert not any("nesterov" in p for p in sample(adam, 5))


def test_the_count_parameter_decides_how_many_layer_parameters_exist():
    config = parse_config({"name": "t", "space": ["cnn_architecture"]})
    for params in sample(config, 100):
        n = params["n_conv"]
        assert {k for k in params if k.startswith("conv") and k.endswith(".kernel_size")} == {
            f"conv{i}.kernel_size" for i in range(1, n + 1)}
        assert sum(k.startswith("dense") for k in params) == params["n_dense"]
    fixed = parse_config({"name": "t", "model_params": {"n_conv": 3},
                          "space": {"conv{i}.pool": {"categorical": ["max", "avg"], "repeat": "n_conv"}}})
    assert all(set(p) == {"conv1.pool", "conv2.pool", "conv3.pool"} for p in sample(fixed, 5))


def test_repeated_parameters_flatten_to_valid_mlflow_param_names():
    from mlflow.utils.validation import _validate_param_name

    from visionsweep.config import flatten

    flat = flatten(parse_config({"name": "t", "space": ["cnn_architecture"]}))
    assert "space.conv:i.channels.categorical" in flat
    for name in flat:
        _validate_param_name(name)


def test_named_spaces_compose_with_overrides_and_removals():
    config = parse_config({"name": "t", "space": ["regularization", "sgd", {"lr": {"categorical": [0.1]}, "dropout": None}]})
    assert config.space["lr"].categorical == [0.1] and "dropout" not in config.space
    assert list(config.space)[:2] == ["weight_decay", "label_smoothing"]
    assert all(p["lr"] == 0.1 for p in sample(config, 5))


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "cmaes", "qmc"])
def test_every_sampler_draws_from_a_conditional_space(sampler):
    space = {"optimizer": {"categorical": ["sgd", "adam"]}, "n_conv": {"int": [1, 2]},
             "conv{i}.channels": {"categorical": [8, 16], "repeat": "n_conv"},
             "momentum": {"categorical": [0.8, 0.9], "when": {"optimizer": "sgd"}}}
    if sampler != "grid":
        space["lr"] = {"loguniform": [0.001, 0.1]}
    config = parse_config({"name": "t", "space": space, "search": {"sampler": sampler}})
    drawn = sample(config, 12, make_sampler(config, concurrent=2))
    assert all(("momentum" in p) == (p["optimizer"] == "sgd") for p in drawn)
    assert all(sum(k.startswith("conv") for k in p) == p["n_conv"] for p in drawn)
    assert len({tuple(sorted(p.items())) for p in drawn}) > 3


def test_tpe_groups_parameters_only_when_trials_can_have_different_ones():
    flat = parse_config({"name": "t", "space": {"lr": {"loguniform": [0.001, 0.1]}, "n_conv": {"int": [1, 2]}}})
    repeated = parse_config({"name": "t", "space": {"n_conv": {"int": [1, 2]},
                                                    "conv{i}.channels": {"categorical": [8, 16], "repeat": "n_conv"}}})
    conditional = parse_config({"name": "t", "space": {"optimizer": {"categorical": ["sgd", "adam"]},
                                                       "momentum": {"uniform": [0.8, 0.9], "when": {"optimizer": "sgd"}}}})
    grouped = lambda config: make_sampler(config, concurrent=2)._group  # noqa: E731
    assert not grouped(flat) and grouped(repeated) and grouped(conditional)


def walk_to_the_end(walk: CoordinateWalk, objective) -> list[dict]:
    tried = []
    while (config := walk.propose()) is not None:
        tried.append(config)
        walk.tell(config, objective(config))
    assert walk.done
    return tried


def test_coordinate_walk_carries_the_best_value_forward_in_order():
    # Best lr is 0.1, best batch_size 32, best dropout 0.5; the defaults are lr 0.05, batch_size 64, dropout 0.25.
    defaults = {"lr": 0.05, "batch_size": 64, "dropout": 0.25}

    def objective(config):
        c = {**defaults, **config}
        return -abs(c["lr"] - 0.1) - abs(c["batch_size"] - 32) / 100 - abs(c["dropout"] - 0.5)

    walk = CoordinateWalk({"lr": [0.01, 0.1, 1.0], "dropout": [0.25, 0.5], "batch_size": [32, 64]},
                          order=["lr", "batch_size", "dropout"], mode="max", fixed=defaults)
    tried = walk_to_the_end(walk, objective)
    assert tried == [
        {"lr": 0.01}, {"lr": 0.1}, {"lr": 1.0},
        {"lr": 0.1, "batch_size": 32},  # batch_size 64 is the default: {lr: 0.1} already scored it
        {"lr": 0.1, "batch_size": 32, "dropout": 0.5},  # dropout 0.25 is the default: scored just before
    ]
    assert walk.chosen == {"lr": 0.1, "batch_size": 32, "dropout": 0.5}


def test_coordinate_walk_minimises_and_waits_for_the_whole_stage():
    walk = CoordinateWalk({"a": [1, 2], "b": [1, 2]}, mode="min")
    first, second = walk.propose(), walk.propose()
    assert walk.propose() is None and not walk.done  # the next parameter waits for both scores
    walk.tell(second, 0.1)
    walk.tell(first, None)  # a failed trial is the worst
    assert walk.propose() == {"a": 2, "b": 1}


def test_coordinate_searcher_scores_trials_by_their_best_epoch():
    walk = CoordinateWalk({"lr": [0.1, 0.2]}, mode="max")
    searcher = CoordinateSearch(walk, metric="val_accuracy", mode="max")
    assert searcher.suggest("t1") == {"lr": 0.1} and searcher.suggest("t2") == {"lr": 0.2}
    assert searcher.suggest("t3") is None  # waiting
    for trial, scores in (("t1", [0.5, 0.9, 0.6]), ("t2", [0.7, 0.8])):
        for score in scores:
            searcher.on_trial_result(trial, {"val_accuracy": score})
        searcher.on_trial_complete(trial, {"val_accuracy": scores[-1]})
    assert searcher.suggest("t3") == searcher.FINISHED and walk.chosen == {"lr": 0.1}
