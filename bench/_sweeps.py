"""Sweep pieces the bench scripts share: a config from a few numbers, a record of each result, a bare trial loop."""

import time

import _record  # noqa: F401  (puts src/ on the path before visionsweep is imported)
import numpy as np
import optuna
import torch
from ray import tune
from sklearn.model_selection import train_test_split

from visionsweep import data
from visionsweep.config import DataConfig, SweepConfig, parse_config
from visionsweep.orchestrator import make_sampler
from visionsweep.search_spaces import DefineByRun
from visionsweep.trainables import Trial, TrialData, train_classifier


def sweep_config(name: str, **sections) -> SweepConfig:
    """A validated config: `sweep_config("x", search={"trials": 4}, scheduler={"kind": "fifo"})`."""
    return parse_config({"name": name, **sections}, source=f"bench config {name}")


def register_subset(source: str, train_rows: int, test_rows: int, seed: int = 0) -> str:
    """Registers `<source>_subset`: a stratified sample of the source's training rows and of its given test rows."""
    name = f"{source}_subset"
    if name in data.names():
        return name

    @data.register(name)
    def subset(config) -> data.Dataset:
        full = data.load(DataConfig(dataset=source))
        if full.test_rows is None:
            raise ValueError(f"{source} has no given test rows to sample from")
        rest = np.setdiff1d(np.arange(len(full.labels)), full.test_rows)
        pick = lambda rows, n: train_test_split(rows, train_size=n, stratify=full.labels[rows], random_state=seed)[0]  # noqa: E731
        rows = np.concatenate([pick(rest, train_rows), pick(full.test_rows, test_rows)])
        return data.Dataset(
            images=full.images[rows], labels=full.labels[rows], classes=full.classes,
            test_rows=np.arange(train_rows, train_rows + test_rows),
        )

    return name


def planned_params(config: SweepConfig) -> list[dict]:
    """The parameters the sweep's sampler will propose, in order (a random sampler ignores results, so they repeat)."""
    if config.search.sampler != "random":
        raise ValueError("only a random sampler's proposals are known before the sweep runs")
    study = optuna.create_study(sampler=make_sampler(config.search, config.resources.concurrent))
    space = DefineByRun(config.space)
    planned = []
    for _ in range(config.search.trials):
        trial = study.ask()
        space(trial)
        planned.append(trial.params)
    return planned


def trial_data(config: SweepConfig) -> TrialData:
    """The data a trial receives, exactly as run_sweep puts it into the object store."""
    dataset = data.load(config.data)
    split = data.make_split(dataset, config.data.val_fraction, config.data.test_fraction, config.data.seed,
                            config.data.folds)
    return TrialData.of(dataset, split)


def run_bare(config: SweepConfig, params: list[dict]) -> list[float]:
    """Seconds of each trial run serially in this process: the same trainable, with no Ray, no MLflow (each
    report goes to a list instead of Ray Tune; the checkpoint files are still written)."""
    data = trial_data(config)
    torch.set_num_threads(max(1, int(config.resources.cpu)))  # as run_trial does in a trial process
    seconds, reports = [], []
    for trial_params in params:
        started = time.perf_counter()
        trial = Trial(data, config, send=lambda result, folder: reports.append(result))
        train_classifier(trial_params, trial)
        seconds.append(time.perf_counter() - started)
    if len(reports) != len(params) * config.scheduler.max_epochs:
        raise RuntimeError(f"bare loop: {len(reports)} reports for {len(params)} trials")
    return seconds


class Timeline(tune.Callback):
    """On the driver: when each trial started and ended, and every result in the order it arrived."""

    def __init__(self, metric: str = "val_accuracy"):
        self.metric = metric
        self.started, self.ended, self.results = {}, {}, []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started.setdefault(trial.trial_id, time.monotonic())

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.append(
            {
                "trial": trial.trial_id,
                "epoch": int(result["epoch"]),
                "value": float(result[self.metric]),
                "seconds": float(result.get("time_this_iter_s", 0.0)),  # measured inside the trial
                "at": time.monotonic(),
            }
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended[trial.trial_id] = time.monotonic()

    on_trial_error = on_trial_complete

    def trial_seconds(self) -> dict[str, float]:
        """Per trial, the training time its results report (the work, as Ray's own clock inside the trial saw it)."""
        totals = {}
        for result in self.results:
            totals[result["trial"]] = totals.get(result["trial"], 0.0) + result["seconds"]
        return totals


def spread(values) -> dict:
    """min, median, max and the coefficient of variation: how noisy repeated identical work was."""
    ordered = sorted(values)
    mean = sum(ordered) / len(ordered)
    variance = sum((v - mean) ** 2 for v in ordered) / max(1, len(ordered) - 1)
    return {
        "min": round(ordered[0], 3),
        "median": round(ordered[len(ordered) // 2], 3),
        "max": round(ordered[-1], 3),
        "cv": round(variance**0.5 / mean, 4) if mean else None,
    }
