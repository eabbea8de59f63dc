"""The trial contract: what a training function gets, and how it reports.

Ray Tune calls a training function once per trial as `train(params, trial)`: `params` are the trial's sampled
values, `trial` a `Trial`. The function builds its model, trains epoch by epoch, and calls
`trial.report(metrics, val_probs=..., test_probs=..., model=..., state=...)` once per epoch. visionsweep turns
each report into a Ray Tune result: the scheduler (ASHA) may end the trial there and the driver logs the
metrics to MLflow. A report persists a checkpoint (`state`, and the predictions and model of the best epoch so
far) only when needed: at an improving epoch, an ASHA rung, the last epoch and every `storage.checkpoint_every`
epochs (each costs about 20 ms on 2 cores: Tune persists it within the report). So a trial stopped at any epoch still
leaves its best epoch's predictions for MLflow, the ensemble and `promote`, and one that continues after
Ctrl-C or a lost process trains the epochs since its last checkpoint again (MLflow logs each epoch once).

    def train(params, trial):
        model = build(params, trial.data).to(trial.device)
        state = trial.restore()                 # None, or the `state` of the last persisted epoch
        if state:
            model.load_state_dict(state["model"])
        for epoch in range(trial.epoch + 1, trial.max_epochs + 1):
            ...                                 # one epoch of training
            trial.report({"val_accuracy": acc}, val_probs=val, test_probs=test, model=model,
                         state={"model": model.state_dict()})
"""

import importlib
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from visionsweep import models
from visionsweep.config import ConfigError, SweepConfig
from visionsweep.outcome import check_finite
from visionsweep.task import Task

STATE_FILE = "state.pt"  # in each checkpoint: the epoch counters and the function's own `state`
PREDICTIONS_FILE = "predictions.npz"  # the best epoch's predictions (no pickle), with `epoch` and `classes`
MODEL_FILE = "model.pt"  # the best epoch's model weights (a state_dict)


@dataclass(frozen=True, eq=False)
class TrialData:
    """The sweep's split as one trial sees it: uint8 images (N, H, W, C) and labels (class indices (N,), or a
    multi-hot (N, C) for multi-label data), the same rows in every trial and in the ensemble."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    folds: np.ndarray | None = None  # data.folds >= 2: the fold of each development row (training, then validation)

    @classmethod
    def of(cls, dataset, split) -> "TrialData":
        """The rows of a `data.Dataset` that a `data.Split` names."""
        parts = {}
        for part in ("train", "val", "test"):
            rows = getattr(split, part)
            parts[f"x_{part}"], parts[f"y_{part}"] = dataset.images[rows], dataset.labels[rows]
        return cls(**parts, classes=tuple(dataset.classes), folds=split.folds)

    @cached_property
    def task(self) -> Task:
        return Task.of(self.y_train, self.classes)

    @property
    def image_size(self) -> int:
        return self.x_train.shape[1]

    @property
    def channels(self) -> int:
        return self.x_train.shape[3]

    @property
    def model_shape(self) -> dict:
        """What `models.create` needs to know of the data."""
        return {"num_classes": len(self.classes), "in_channels": self.channels, "image_size": self.image_size,
                "multilabel": self.task.multilabel}

    @cached_property
    def normalization(self) -> dict[str, list[float]]:
        """Per-channel mean and std of the training images on the 0..1 scale: how the built-in trainable
        normalises, and how a promoted model normalises the images it is given."""
        mean, std = channel_stats(self.x_train)
        return {"mean": mean, "std": std}


class Trial:
    """One trial's side of the contract: its data, its limits, and `report` (see the module docstring).

    data: a TrialData. max_epochs: the sweep's scheduler.max_epochs. device: where to train (a GPU when the
    sweep asks for one and there is one). config: the whole parsed sweep file. epoch: epochs reported so far
    (after a restart, the epochs reported before it).
    """

    def __init__(self, data: TrialData, config: SweepConfig, checkpoint=None, send=None):
        """checkpoint: Ray Tune's, to continue from. send(result, folder): where reports go instead of Ray Tune
        (the folder holds the checkpoint's files until it returns; None when the report persists none)."""
        self.data = data
        self.config = config
        self.max_epochs = config.scheduler.max_epochs
        self.device = torch.device("cuda" if config.resources.gpu > 0 and torch.cuda.is_available() else "cpu")
        self.metric = config.search.metric
        self.sign = 1 if config.search.mode == "max" else -1  # so that higher is better
        self.epoch = 0
        self.best_epoch = 0
        self._best_score = -math.inf
        self._predictions: dict[str, np.ndarray] = {}  # the best epoch's
        self._model: dict | None = None  # the best epoch's weights
        self._state = None
        self._send = send
        self._checkpoint_every = config.storage.checkpoint_every
        self._rungs = config.scheduler.rung_epochs()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                self._load(Path(folder))

    def restore(self):
        """The `state` given with the last report that persisted a checkpoint before a restart (a trial retried
        after its process or node died, a sweep resumed after its driver died); None on a fresh start. Continue
        at `trial.epoch + 1`."""
        return self._state

    def is_best(self, metrics: dict) -> bool:
        """Whether an epoch with these metrics would be the best so far by the sweep's `search.metric`: a
        function that pays for its test predictions can make them only then."""
        return self.sign * metrics[self.metric] > self._best_score

    def report(self, metrics: dict, *, val_probs=None, test_probs=None, model=None, state=None,
               extra: dict | None = None) -> None:
        """Ends an epoch: its `metrics` (`val_...` measures, `train_loss`, ...; must hold the sweep's
        `search.metric` unless `val_probs` lets visionsweep score it) go to the scheduler and to MLflow.

        val_probs, test_probs: probabilities (rows x classes) of the validation and test rows, kept if this is
        the best epoch so far. model: a torch module whose weights are kept likewise. state: anything to
        resume from (tensors, numbers, strings, lists and dicts of them: it is loaded with weights_only), given
        back by `restore()` after a restart. extra: more arrays stored with the best epoch's predictions.
        ASHA may end the trial inside this call.
        """
        metrics = dict(metrics)
        # A loss that is no longer finite ends the trial as failed (outcome.Diverged), before its NaNs are kept.
        check_finite(self.epoch + 1, **{name: value for name, value in metrics.items() if name.endswith("loss")})
        if val_probs is not None:
            val_probs = self._checked(val_probs, self.data.y_val, "val_probs")
            for name, value in self.data.task.scores(val_probs, self.data.y_val, "val_").items():
                metrics.setdefault(name, value)
        if test_probs is not None:
            test_probs = self._checked(test_probs, self.data.y_test, "test_probs")
        if self.metric not in metrics:
            raise ValueError(f"trial.report: metrics {sorted(metrics)} lack the sweep's search.metric "
                             f"{self.metric!r}; report it, or pass val_probs to have it scored")
        self.epoch += 1
        improving = self.is_best(metrics)
        if improving:
            self._best_score, self.best_epoch = self.sign * metrics[self.metric], self.epoch
            given = {"val_probs": val_probs, "test_probs": test_probs, **(extra or {})}
            self._predictions = {k: v for k, v in given.items() if v is not None}
            self._model = None if model is None else {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        result = {"epoch": self.epoch, **metrics, "best_epoch": self.best_epoch}
        if not (improving or self.persists(self.epoch)):
            self._send_result(result, None)
            return
        with tempfile.TemporaryDirectory() as folder:
            self._save(Path(folder), state)
            self._send_result(result, folder)

    def persists(self, epoch: int) -> bool:
        """Whether a report at this epoch persists a checkpoint even if the epoch is not the best: each
        storage.checkpoint_every epochs, at ASHA's rungs and at the last epoch. The best epoch always does, so
        the latest checkpoint holds the best predictions wherever the trial stops."""
        return epoch % self._checkpoint_every == 0 or epoch in self._rungs or epoch >= self.max_epochs

    def _checked(self, probs, labels: np.ndarray, name: str) -> np.ndarray:
        probs = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
        expected = (len(labels), len(self.data.classes))
        if probs.shape != expected:
            raise ValueError(f"trial.report: {name} has shape {probs.shape}; expected {expected} (rows x classes)")
        return probs.astype(np.float32)

    def _send_result(self, result: dict, folder: str | None) -> None:
        if self._send is not None:
            self._send(result, folder)
            return
        from ray import tune

        tune.report(result, checkpoint=None if folder is None else tune.Checkpoint.from_directory(folder))

    def _save(self, folder: Path, state) -> None:
        counters = {"epoch": self.epoch, "best_epoch": self.best_epoch, "best_score": self._best_score}
        torch.save({**counters, "state": state}, folder / STATE_FILE)
        if self._predictions:
            np.savez(folder / PREDICTIONS_FILE, **self._predictions, classes=np.array(self.data.classes),
                     epoch=self.best_epoch)
        if self._model is not None:
            torch.save(self._model, folder / MODEL_FILE)

    def _load(self, folder: Path) -> None:
        saved = torch.load(folder / STATE_FILE, weights_only=True)
        self.epoch, self.best_epoch, self._best_score = saved["epoch"], saved["best_epoch"], saved["best_score"]
        self._state = saved["state"]
        if (folder / PREDICTIONS_FILE).exists():
            with np.load(folder / PREDICTIONS_FILE, allow_pickle=False) as stored:
                self._predictions = {k: stored[k] for k in stored.files if k not in ("classes", "epoch")}
        if (folder / MODEL_FILE).exists():
            self._model = torch.load(folder / MODEL_FILE, weights_only=True)


def channel_stats(images: np.ndarray, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, on the 0..1 scale; in chunks, never a float copy of them all."""
    total = np.zeros(images.shape[-1])
    squares = np.zeros(images.shape[-1])
    for start in range(0, len(images), chunk):
        pixels = images[start : start + chunk].reshape(-1, images.shape[-1]).astype(np.float64) / 255
        total += pixels.sum(axis=0)
        squares += (pixels**2).sum(axis=0)
    count = images[..., 0].size
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0))
    return mean.tolist(), (std + 1e-6).tolist()


def load_trainable(spec: str | None, folder: str | None = None) -> tuple[Callable, str | None]:
    """The training function `package.module:function` names, and the folder its top-level package was
    imported from (so that trial processes can import it too); (the built-in classifier, None) for None.

    The module is found on sys.path (PYTHONPATH), else in `folder` (the sweep file's). Raises ConfigError
    naming `trainable` when it cannot be imported or is not a function.
    """
    if spec is None:
        from visionsweep.trainables.classifier import train_classifier

        return train_classifier, None
    module_name, _, name = spec.partition(":")
    try:
        module = _import(module_name, folder)
    except Exception as err:
        where = f"on PYTHONPATH or in {folder}" if folder else "on PYTHONPATH"
        raise ConfigError(f"trainable {spec!r}: cannot import {module_name} ({type(err).__name__}: {err}); "
                          f"the package must be {where}") from None
    train = getattr(module, name, None)
    if not callable(train):
        raise ConfigError(f"trainable {spec!r}: module {module_name} has no function {name!r}")
    root = Path(module.__file__).resolve().parents[module_name.count(".") + (module.__file__.endswith("__init__.py"))]
    return train, str(root)


def _import(module_name: str, folder: str | None):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if not folder or err.name != module_name.partition(".")[0] or not models.is_beside(module_name, folder):
            raise
    sys.path.insert(0, folder)
    return importlib.import_module(module_name)


def run_trial(params: dict, *, data: TrialData, config: SweepConfig, code_folder: str | None = None) -> None:
    """What Ray Tune calls per trial: a `Trial` (continuing from Tune's checkpoint, if any) handed to the
    sweep's training function (`trainable`; default the built-in classifier), imported in this process."""
    from ray import tune

    train, _ = load_trainable(config.trainable, code_folder)
    torch.set_num_threads(max(1, int(config.resources.cpu)))
    train(params, Trial(data, config, checkpoint=tune.get_checkpoint()))
