"""Train one image classifier for one trial, reporting every epoch to Ray Tune with a checkpoint.

The checkpoint holds the weights to resume from and the predictions of the best validation epoch so
far (`predictions.npz`), which the driver logs to MLflow when the trial ends, however it ends.
"""

import tempfile
from pathlib import Path

import numpy as np
import torch
from ray import tune

from visionsweep import metrics, models
from visionsweep.config import SweepConfig
from visionsweep.data import imbalance
from visionsweep.data.augment import Augmenter, offline_copies
from visionsweep.trainables.recipe import EarlyStopping, Fitting, make_loss

STATE_FILE = "state.pt"
PREDICTIONS_FILE = "predictions.npz"
EVAL_BATCH = 1024  # images per forward pass when predicting


def train_classifier(params: dict, *, data: dict, sweep: SweepConfig) -> None:
    """Ray Tune function trainable. `params` are the trial's sampled values; `data` comes from the object store.

    A trial trains one model per seed (`search.repeats` N: seeds seed .. seed+N-1) and per fold (`data.folds`
    K: each fold of the training + validation rows validates the model trained on the others), all in step.
    Each epoch reports the mean of their metrics (the objective, so ASHA compares means) and the std as
    `<metric>_std`. The trial's predictions come from its first seed, at the epoch of the best mean: with
    folds, the out-of-fold predictions of every development row (`oof_probs`, whose validation rows are
    `val_probs`) and the mean of the fold models' test predictions.
    """
    recipe, model_params = sweep.trial_settings(params)
    torch.set_num_threads(max(1, int(sweep.resources.cpu)))
    torch.manual_seed(recipe.seed)
    device = torch.device("cuda" if sweep.resources.gpu > 0 and torch.cuda.is_available() else "cpu")
    multilabel = data["y_train"].ndim == 2
    classes = data["classes"]

    mean, std = channel_stats(data["x_train"])
    x_test = to_input(data["x_test"], mean, std, device)
    augment = sweep.trial_augment(params)
    image_size, channels = data["x_train"].shape[1], data["x_train"].shape[3]
    augmenter = Augmenter(augment, image_size, len(classes), multilabel)
    loss_fn = make_loss(recipe, len(classes), multilabel).to(device)  # validation loss: unweighted, comparable
    folds = [
        Fold(x_train, y_train, x_val, y_val, held_out, mean, std, device, augmenter, augment.offline_copies, recipe,
             len(classes), loss_fn)
        for x_train, y_train, x_val, y_val, held_out in fold_rows(data)
    ]

    device_mean, device_std = channel_tensors(mean, std, device)

    def batch_input(images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.float().div_(255)
        if augmenter.active:
            images, target = augmenter(images, target)
        return normalize(images, device_mean, device_std), target

    max_epochs = sweep.scheduler.max_epochs
    shape = {"num_classes": len(classes), "in_channels": channels, "image_size": image_size, "multilabel": multilabel}
    seeds = range(recipe.seed, recipe.seed + sweep.search.repeats)
    members = [Member(sweep.model, shape, model_params, recipe, seed, fold, max_epochs, device)
               for fold in folds for seed in seeds]
    first_seed = members[:: len(seeds)]  # one member per fold: the trial's predictions
    sign = 1 if sweep.search.mode == "max" else -1  # so that higher is better
    stopping = EarlyStopping(recipe.early_stopping_patience, recipe.early_stopping_min_delta)

    state = {"epoch": 0, "best_epoch": 0, "best_score": -np.inf, "best_model": None}
    best_predictions = None
    checkpoint = tune.get_checkpoint()
    if checkpoint:  # resumed after a failure or a restore: continue where the last epoch ended
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder, STATE_FILE), weights_only=True)
            best_predictions = dict(np.load(Path(folder, PREDICTIONS_FILE), allow_pickle=False))
        del best_predictions["epoch"]  # saved beside the predictions; written again with each checkpoint
        for member, member_state in zip(members, state["members"]):
            member.load_state_dict(member_state)
        stopping = EarlyStopping(**state["stopping"])

    for epoch in range(state["epoch"] + 1, max_epochs + 1):
        runs = []
        for member in members:
            fold = member.fold
            train_loss = member.train_epoch(epoch, batch_input)
            val_probs, val_loss = predict(member.model, fold.x_val, fold.y_val, loss_fn, multilabel)
            member.fitting.end_epoch(val_loss)
            thresholds = None
            if multilabel:  # decision thresholds chosen on validation rows, stored to apply unchanged to test rows
                thresholds = metrics.tune_thresholds(val_probs, fold.labels_val, recipe.threshold, recipe.fixed_threshold)
            scores = metrics.scores(val_probs, fold.labels_val, prefix="val_",
                                    threshold=0.5 if thresholds is None else thresholds,
                                    classes=classes if multilabel else None)
            runs.append(({"train_loss": train_loss, "val_loss": val_loss, **scores}, val_probs, thresholds))
        val_metrics = aggregate([run[0] for run in runs])
        score = sign * val_metrics[sweep.search.metric]
        if score > state["best_score"]:
            # Only an improving epoch pays for the test-set pass: its predictions are the trial's.
            best_predictions = trial_predictions(first_seed, runs[:: len(seeds)], x_test, data, recipe, loss_fn)
            best_predictions["classes"] = np.array(classes)
            state.update(
                best_epoch=epoch,
                best_score=score,
                best_model={k: v.detach().cpu().clone() for k, v in members[0].model.state_dict().items()},
            )
        early_stopped = stopping.update(score)
        state.update(
            epoch=epoch,
            model=members[0].model.state_dict(),
            members=[member.state_dict() for member in members],
            stopping=stopping.state_dict(),
            normalization={"mean": mean, "std": std},
        )
        result = {
            "epoch": epoch,
            **val_metrics,
            "train_lr": members[0].fitting.lr,
            "best_epoch": state["best_epoch"],
            # Ending by its own patience is a finished trial, not one the scheduler pruned (outcome.py).
            "early_stopped": early_stopped,
        }
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder, STATE_FILE))
            np.savez(Path(folder, PREDICTIONS_FILE), **best_predictions, epoch=state["best_epoch"])
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
        if early_stopped:
            return


def fold_rows(data: dict):
    """(x_train, y_train, x_val, y_val, held_out) per fold, as numpy arrays: the fixed split (held_out None),
    or with `data["folds"]` each fold of the development rows held out in turn (held_out: their positions)."""
    if "folds" not in data:
        yield data["x_train"], data["y_train"], data["x_val"], data["y_val"], None
        return
    x = np.concatenate([data["x_train"], data["x_val"]])
    y = np.concatenate([data["y_train"], data["y_val"]])
    for number in range(data["folds"].max() + 1):
        held_out = np.flatnonzero(data["folds"] == number)
        kept = np.flatnonzero(data["folds"] != number)
        yield x[kept], y[kept], x[held_out], y[held_out], held_out


class Fold:
    """The rows one model trains and validates on, ready on the device, with the loss and draws they call for.

    Training images stay uint8 (N, C, H, W), a quarter of float's memory: each batch becomes 0..1 floats,
    is augmented on that scale, then normalised. Validation images are normalised once.
    """

    def __init__(self, x_train, y_train, x_val, y_val, held_out, mean, std, device, augmenter, copies, recipe,
                 num_classes, loss_fn):
        x_train = torch.as_tensor(np.array(x_train), device=device).permute(0, 3, 1, 2)
        self.x_train, self.y_train = offline_copies(x_train, torch.as_tensor(np.array(y_train), device=device),
                                                    augmenter, copies)
        self.x_val = to_input(x_val, mean, std, device)
        self.y_val = torch.as_tensor(np.array(y_val), device=device)
        self.labels_val = np.asarray(y_val)
        self.held_out = held_out
        labels_train = self.y_train.cpu().numpy()
        self.loss_fn = loss_fn
        if recipe.class_weights == "balanced":
            weights = imbalance.loss_weights(labels_train, num_classes)
            self.loss_fn = make_loss(recipe, num_classes, labels_train.ndim == 2, class_weights=weights).to(device)
        self.draw_weights = None
        if recipe.oversample > 0:
            self.draw_weights = torch.as_tensor(imbalance.sample_weights(labels_train, num_classes, recipe.oversample))


def trial_predictions(members, runs, x_test, data, recipe, loss_fn) -> dict[str, np.ndarray]:
    """The stored predictions of one epoch, from one member per fold and their validation `runs`."""
    multilabel = data["y_train"].ndim == 2
    if members[0].fold.held_out is None:  # the fixed split
        _, val_probs, thresholds = runs[0]
        test_probs, _ = predict(members[0].model, x_test, None, loss_fn, multilabel)
        predictions = {"val_probs": val_probs, "test_probs": test_probs}
    else:
        oof_probs = np.empty((len(data["folds"]), len(data["classes"])), dtype=np.float32)
        for member, (_, val_probs, _) in zip(members, runs):
            oof_probs[member.fold.held_out] = val_probs
        test_probs = np.mean([predict(member.model, x_test, None, loss_fn, multilabel)[0] for member in members], axis=0)
        thresholds = None
        if multilabel:  # one set of thresholds for the trial, tuned on every out-of-fold row
            development_labels = np.concatenate([data["y_train"], data["y_val"]])
            thresholds = metrics.tune_thresholds(oof_probs, development_labels, recipe.threshold, recipe.fixed_threshold)
        predictions = {"val_probs": oof_probs[len(data["y_train"]):], "test_probs": test_probs.astype(np.float32),
                       "oof_probs": oof_probs}
    if thresholds is not None:
        predictions["thresholds"] = thresholds
    return predictions


class Member:
    """One seed's model on one fold, with its optimizer and schedule (a trial has repeats x folds of them)."""

    def __init__(self, model_name, shape, model_params, recipe, seed, fold: Fold, max_epochs, device):
        torch.manual_seed(seed)
        self.fold = fold
        self.model = models.create(model_name, **shape, **model_params).to(device)
        # bfloat16 autocast (tensor cores, or a CPU's AMX units) with channels-last convolutions (config.py: precision).
        bf16 = recipe.precision == "bf16" or (recipe.precision == "auto" and device.type == "cuda")
        if bf16:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        steps_per_epoch = -(-len(fold.x_train) // recipe.batch_size)
        self.fitting = Fitting(recipe, self.model, steps_per_epoch, max_epochs)
        self.batch_size = recipe.batch_size
        self.generator = torch.Generator().manual_seed(seed)

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


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over seeds; with more than one seed also its (population) std as `<metric>_std`."""
    means = {k: float(np.mean([run[k] for run in per_seed])) for k in per_seed[0]}
    if len(per_seed) == 1:
        return means
    return {**means, **{f"{k}_std": float(np.std([run[k] for run in per_seed])) for k in per_seed[0]}}


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


def to_input(images: np.ndarray, mean, std, device) -> torch.Tensor:
    """uint8 (N, H, W, C) -> normalised float (N, C, H, W) on the device."""
    x = torch.as_tensor(np.array(images), device=device).permute(0, 3, 1, 2).float().div_(255)
    return normalize(x, *channel_tensors(mean, std, device))


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """`mean` and `std`: (C, 1, 1) tensors on x's device, from `channel_tensors`."""
    return (x - mean) / std


def channel_tensors(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel lists as (C, 1, 1) tensors on the device, made once: a copy to a GPU per batch waits for it."""
    return torch.tensor(mean, device=device)[:, None, None], torch.tensor(std, device=device)[:, None, None]


@torch.no_grad()
def predict(model, x, y, loss_fn, multilabel) -> tuple[np.ndarray, float | None]:
    """Probabilities (float32, N x classes) and, when labels are given, the mean loss."""
    model.eval()
    logits = torch.cat([model(chunk) for chunk in x.split(EVAL_BATCH)])
    probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)
    loss = None
    if y is not None:
        loss = loss_fn(logits, y).item()
    return probs.float().cpu().numpy(), loss
