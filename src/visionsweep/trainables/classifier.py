"""The built-in training function: the sweep's `model` trained with its `train` recipe, reporting every epoch.

It is a training function like any user's (`train(params, trial)`, see _trial.py), read top to bottom as
build -> epochs -> report. A trial trains one model per seed (`search.repeats` N: seeds seed .. seed+N-1) and
per fold (`data.folds` K: each fold of the training + validation rows validates the model trained on the
others), all in step. Each epoch reports the mean of their metrics (the objective, so ASHA compares means)
and the std as `<metric>_std`. The trial's predictions come from its first seed, at the epoch of the best
mean: with folds, the out-of-fold predictions of every development row (`oof_probs`, whose validation rows
are `val_probs`) and the mean of the fold models' test predictions.
"""

from dataclasses import dataclass

import numpy as np
import torch

from visionsweep import models
from visionsweep.config import TrainConfig
from visionsweep.data import imbalance
from visionsweep.data.augment import Augmenter, offline_copies
from visionsweep.task import Task
from visionsweep.trainables._trial import Trial, TrialData
from visionsweep.trainables.recipe import EarlyStopping, Fitting, make_loss

EVAL_BATCH = 1024  # images per forward pass when predicting


def train_classifier(params: dict, trial: Trial) -> None:
    """Ray Tune runs this once per trial (through `run_trial`); `params` are the trial's sampled values."""
    training = Training.build(params, trial)
    state = trial.restore()
    if state is not None:  # resumed after a failure or a restore: continue where the last epoch ended
        training.load_state_dict(state)
    for epoch in range(trial.epoch + 1, trial.max_epochs + 1):
        runs = [member.run_epoch(epoch, training) for member in training.members]
        metrics = aggregate([run.metrics for run in runs])
        metrics["train_lr"] = training.members[0].fitting.lr
        # Ending by its own patience is a finished trial, not one the scheduler pruned (outcome.py).
        metrics["early_stopped"] = training.stopping.update(trial.sign * metrics[trial.metric])
        # Only an improving epoch pays for the test-set pass: its predictions are the trial's.
        predictions = training.predictions(runs) if trial.is_best(metrics) else {}
        trial.report(metrics, **predictions, model=training.members[0].model, state=training.state_dict())
        if metrics["early_stopped"]:
            return


@dataclass
class EpochRun:
    """One member's epoch: its metrics, its validation probabilities and (multi-label) thresholds."""

    metrics: dict[str, float]
    val_probs: np.ndarray
    thresholds: np.ndarray | None


class Preprocess:
    """uint8 images -> the model's input on the device: 0..1 floats, augmented (training batches), normalised.

    Training images stay uint8 (N, C, H, W) (`models.channels_first`), a quarter of float's memory: each batch
    becomes 0..1 floats, is augmented on that scale, then normalised. Validation and test images are normalised
    once. The conversion and normalisation are those of `models.Normalization`, which a trained model is served
    with too.
    """

    def __init__(self, normalization: dict, augmenter: Augmenter, device: torch.device):
        self.normalize = models.Normalization(normalization, device)
        self.augmenter, self.device = augmenter, device

    def images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, C) -> normalised float (N, C, H, W) on the device."""
        return self.normalize.inputs(images)

    def batch(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A uint8 (N, C, H, W) training batch -> the model's input, augmented, with its (mixed) target."""
        images = models.unit_scale(images)
        if self.augmenter.active:
            images, target = self.augmenter(images, target)
        return self.normalize(images), target


@dataclass
class Rows:
    """One fold's rows (numpy): the fixed split (`held_out` None), or a fold of the development rows held out
    (`held_out`: their positions among the development rows)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    held_out: np.ndarray | None = None


def fold_rows(data: TrialData) -> list[Rows]:
    if data.folds is None:
        return [Rows(data.x_train, data.y_train, data.x_val, data.y_val)]
    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    folds = []
    for number in range(data.folds.max() + 1):
        held_out, kept = np.flatnonzero(data.folds == number), np.flatnonzero(data.folds != number)
        folds.append(Rows(x[kept], y[kept], x[held_out], y[held_out], held_out))
    return folds


class Fold:
    """The rows one model trains and validates on, ready on the device, with the loss and draws they call for."""

    def __init__(self, rows: Rows, recipe: TrainConfig, task: Task, preprocess: Preprocess, copies: int):
        device = preprocess.device
        x_train = models.channels_first(rows.x_train, device)
        y_train = torch.as_tensor(np.array(rows.y_train), device=device)
        self.x_train, self.y_train = offline_copies(x_train, y_train, preprocess.augmenter, copies)
        self.x_val = preprocess.images(rows.x_val)
        self.y_val = torch.as_tensor(np.array(rows.y_val), device=device)
        self.labels_val = np.asarray(rows.y_val)
        self.held_out = rows.held_out
        labels_train = self.y_train.cpu().numpy()
        weights = None
        if recipe.class_weights == "balanced":  # the training loss only; validation loss stays comparable
            weights = imbalance.loss_weights(labels_train, task.num_classes)
        self.loss_fn = make_loss(recipe, task, class_weights=weights).to(device)
        self.draw_weights = None
        if recipe.oversample > 0:
            self.draw_weights = torch.as_tensor(imbalance.sample_weights(labels_train, task.num_classes,
                                                                         recipe.oversample))


class Member:
    """One seed's model on one fold, with its optimizer and schedule (a trial has repeats x folds of them)."""

    def __init__(self, model: torch.nn.Module, fold: Fold, recipe: TrainConfig, seed: int, max_epochs: int):
        self.fold = fold
        self.model = model
        # bfloat16 autocast (tensor cores, or a CPU's AMX units) with channels-last convolutions (config.py: precision).
        device = next(model.parameters()).device
        bf16 = recipe.precision == "bf16" or (recipe.precision == "auto" and device.type == "cuda")
        if bf16:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        steps_per_epoch = -(-len(fold.x_train) // recipe.batch_size)
        self.fitting = Fitting(recipe, self.model, steps_per_epoch, max_epochs)
        self.batch_size = recipe.batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def run_epoch(self, epoch: int, training: "Training") -> EpochRun:
        """Trains one epoch, then scores the fold's validation rows (thresholds tuned on them, multi-label)."""
        task, recipe = training.task, training.recipe
        train_loss = self.train_epoch(epoch, training.preprocess.batch)
        val_probs, val_loss = predict(self.model, self.fold.x_val, task, self.fold.y_val, training.val_loss)
        self.fitting.end_epoch(val_loss)
        # Decision thresholds chosen on validation rows, stored to apply unchanged to test rows.
        thresholds = task.thresholds(val_probs, self.fold.labels_val, recipe.threshold, recipe.fixed_threshold)
        scores = task.scores(val_probs, self.fold.labels_val, "val_", thresholds, per_class=True)
        return EpochRun({"train_loss": train_loss, "val_loss": val_loss, **scores}, val_probs, thresholds)

    def train_epoch(self, epoch: int, batch_input) -> float:
        """One pass over the fold's training rows in a seeded random order; returns the mean training loss.

        `batch_input(images, target)` turns a uint8 batch into the model's input (augmented, normalised);
        with the fold's `draw_weights` the epoch is as many weighted draws with replacement (oversampling rare labels).
        """
        x, y, draw_weights = self.fold.x_train, self.fold.y_train, self.fold.draw_weights
        self.fitting.start_epoch(epoch)
        self.model.train()
        if draw_weights is None:
            order = torch.randperm(len(x), generator=self.generator).to(x.device)
        else:
            order = torch.multinomial(draw_weights, len(x), replacement=True, generator=self.generator).to(x.device)
        total_loss = torch.zeros((), device=x.device)  # summed on the device: `.item()` per step would wait for the GPU
        for batch in order.split(self.batch_size):
            images, target = batch_input(x[batch], y[batch])
            with self.autocast:
                loss = self.fold.loss_fn(self.model(images), target)
            self.fitting.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.fitting.step()
            total_loss += loss.detach().float() * len(batch)
        return total_loss.item() / len(x)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "fitting": self.fitting.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.fitting.load_state_dict(state["fitting"])
        self.generator.set_state(state["generator"])


@dataclass
class Training:
    """Everything one trial trains: its members (seeds x folds), the shared preprocessing and early stopping."""

    data: TrialData
    task: Task
    recipe: TrainConfig
    preprocess: Preprocess
    x_test: torch.Tensor  # normalised, on the device
    val_loss: torch.nn.Module  # unweighted, so that validation losses compare across recipes
    members: list[Member]
    seeds: int
    stopping: EarlyStopping

    @classmethod
    def build(cls, params: dict, trial: Trial) -> "Training":
        config, data, device = trial.config, trial.data, trial.device
        recipe, model_params = config.trial_settings(params)
        torch.manual_seed(recipe.seed)
        augment = config.trial_augment(params)
        augmenter = Augmenter(augment, data.image_size, data.task.num_classes, data.task.multilabel)
        preprocess = Preprocess(data.normalization, augmenter, device)
        folds = [Fold(rows, recipe, data.task, preprocess, augment.offline_copies) for rows in fold_rows(data)]
        seeds = range(recipe.seed, recipe.seed + config.search.repeats)
        members = []
        for fold in folds:
            for seed in seeds:
                torch.manual_seed(seed)
                model = models.create(config.trial_model(params), **data.model_shape, **model_params).to(device)
                members.append(Member(model, fold, recipe, seed, trial.max_epochs))
        return cls(data, data.task, recipe, preprocess, preprocess.images(data.x_test),
                   make_loss(recipe, data.task).to(device), members, len(seeds),
                   EarlyStopping(recipe.early_stopping_patience, recipe.early_stopping_min_delta))

    def predictions(self, runs: list[EpochRun]) -> dict:
        """The epoch's stored predictions, from one member per fold (the first seed's): `val_probs`,
        `test_probs` and, in `extra`, multi-label `thresholds` and with folds `oof_probs`."""
        first_seed = self.members[:: self.seeds]
        runs = runs[:: self.seeds]
        test_probs = np.mean([predict(member.model, self.x_test, self.task)[0] for member in first_seed], axis=0)
        extra = {}
        if first_seed[0].fold.held_out is None:  # the fixed split
            val_probs, thresholds = runs[0].val_probs, runs[0].thresholds
        else:
            oof_probs = np.empty((len(self.data.folds), self.task.num_classes), dtype=np.float32)
            for member, run in zip(first_seed, runs):
                oof_probs[member.fold.held_out] = run.val_probs
            # One set of thresholds for the trial, tuned on every out-of-fold row.
            development_labels = np.concatenate([self.data.y_train, self.data.y_val])
            thresholds = self.task.thresholds(oof_probs, development_labels, self.recipe.threshold,
                                              self.recipe.fixed_threshold)
            val_probs, extra["oof_probs"] = oof_probs[len(self.data.y_train):], oof_probs
        if thresholds is not None:
            extra["thresholds"] = thresholds
        return {"val_probs": val_probs, "test_probs": test_probs.astype(np.float32), "extra": extra}

    def state_dict(self) -> dict:
        return {"members": [member.state_dict() for member in self.members], "stopping": self.stopping.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for member, member_state in zip(self.members, state["members"]):
            member.load_state_dict(member_state)
        self.stopping = EarlyStopping(**state["stopping"])


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over seeds; with more than one seed also its (population) std as `<metric>_std`."""
    means = {k: float(np.mean([run[k] for run in per_seed])) for k in per_seed[0]}
    if len(per_seed) == 1:
        return means
    return {**means, **{f"{k}_std": float(np.std([run[k] for run in per_seed])) for k in per_seed[0]}}


@torch.no_grad()
def predict(model, x: torch.Tensor, task: Task, y=None, loss_fn=None) -> tuple[np.ndarray, float | None]:
    """Probabilities (float32, N x classes) and, when labels are given, the mean loss."""
    model.eval()
    logits = torch.cat([model(chunk) for chunk in x.split(EVAL_BATCH)])
    loss = None if y is None else loss_fn(logits, y).item()
    return task.probabilities(logits).float().cpu().numpy(), loss
