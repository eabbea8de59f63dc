"""A space's distributions, conditionals and repetitions, turned into an Optuna define-by-run function."""

import graphlib
from typing import Any

import optuna

from visionsweep.search_spaces.distribution import Distribution

INDEX = "{i}"  # in a repeated parameter's name: conv{i}.channels -> conv1.channels, conv2.channels, ...


def suggest(trial: optuna.Trial, name: str, distribution: Distribution):
    kind, args = distribution.kind, distribution.args
    if kind == "uniform":
        return trial.suggest_float(name, *args)
    if kind == "loguniform":
        return trial.suggest_float(name, *args, log=True)
    if kind == "int":
        return trial.suggest_int(name, *args)
    return trial.suggest_categorical(name, distribution.categorical)


def holds(when: dict[str, Any] | None, values: dict[str, Any]) -> bool:
    """`{optimizer: [sgd, rmsprop], nesterov: true}` holds when every named parameter has (one of) its values."""
    return all(values.get(k) in (v if isinstance(v, list) else [v]) for k, v in (when or {}).items())


def dependencies(distribution: Distribution) -> set[str]:
    return set(distribution.when or {}) | ({distribution.repeat} if distribution.repeat else set())


def sampling_order(space: dict[str, Distribution]) -> list[str]:
    """The space's parameters, each after the ones its `when` and `repeat` name; raises on a cycle."""
    graph = {name: dependencies(d) & set(space) for name, d in space.items()}
    try:
        return list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        raise ValueError(f"space: the conditions form a cycle: {' -> '.join(err.args[1])}") from None


class DefineByRun:
    """The callable the sweep's searcher calls with each new Optuna trial (ask and tell).

    `fixed` holds the value of every parameter that is not sampled (train settings, model defaults and
    model_params): a condition or a repeat count that names one reads it there. A parameter whose condition
    fails is not sampled, so the trial uses its default. A class, not a closure: Ray pickles the searcher
    (and so this) with the experiment state.
    """

    def __init__(self, space: dict[str, Distribution], fixed: dict[str, Any] | None = None):
        self.space = space
        self.fixed = fixed or {}
        self.order = sampling_order(space)

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.order:
            distribution = self.space[name]
            current = {**self.fixed, **values}
            if not holds(distribution.when, current):
                continue
            if distribution.repeat:
                for i in range(1, int(current[distribution.repeat]) + 1):
                    key = name.replace(INDEX, str(i))
                    values[key] = suggest(trial, key, distribution)
            else:
                values[name] = suggest(trial, name, distribution)
        return values


def check(space: dict[str, Distribution], fixed: dict[str, Any], sampler: str = "tpe") -> None:
    """Raises ValueError when a condition or repeat names an unknown parameter, a repeated name lacks {i},
    the conditions form a cycle, or the grid sampler meets a continuous distribution."""
    known = set(space) | set(fixed)
    for name, distribution in space.items():
        for other in dependencies(distribution):
            if other not in known:
                raise ValueError(f"space.{name}: condition or repeat names {other!r}, which is neither sampled "
                                 "nor a train setting or model parameter")
        if (INDEX in name) != bool(distribution.repeat):
            raise ValueError(f"space.{name}: a name with {INDEX} needs `repeat: <count parameter>`, and repeat "
                             f"needs a name with {INDEX}, e.g. conv{{i}}.channels")
        if distribution.repeat and distribution.repeat in space and space[distribution.repeat].kind not in ("int", "categorical"):
            raise ValueError(f"space.{name}: repeat count {distribution.repeat!r} must be an int or categorical parameter")
        if sampler == "grid" and distribution.kind not in ("int", "categorical"):
            raise ValueError(f"space.{name}: the grid sampler takes int and categorical parameters only "
                             f"(got {distribution.kind})")
    sampling_order(space)


def grid(space: dict[str, Distribution], fixed: dict[str, Any]) -> dict[str, list]:
    """Every parameter's choices for optuna's GridSampler; repeated ones up to their largest count."""
    choices = {}
    for name, distribution in space.items():
        if distribution.repeat:
            counts = _choices(space[distribution.repeat]) if distribution.repeat in space else [fixed[distribution.repeat]]
            choices.update({name.replace(INDEX, str(i)): _choices(distribution) for i in range(1, max(counts) + 1)})
        else:
            choices[name] = _choices(distribution)
    return choices


def _choices(distribution: Distribution) -> list:
    if distribution.kind == "int":
        return list(range(distribution.int[0], distribution.int[1] + 1))
    return distribution.categorical
