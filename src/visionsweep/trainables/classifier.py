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

    With `search.repeats` N, N models (seeds seed .. seed+N-1) train in step; each epoch reports the mean of
    their metrics (the objective, so ASHA compares means) and the std as `<metric>_std`. The trial's
    predictions are those of the first seed, at the epoch of the best mean.
    """
    recipe, model_params = sweep.trial_settings(params)
    torch.set_num_threads(max(1, int(sweep.resources.cpu)))
    torch.manual_seed(recipe.seed)
    device = torch.device("cuda" if sweep.resources.gpu > 0 and torch.cuda.is_available() else "cpu")
    multilabel = data["y_train"].ndim == 2
    classes = data["classes"]

    mean, std = channel_stats(data["x_train"])
    x_val, x_test = (to_input(data[f"x_{part}"], mean, std, device) for part in ("val", "test"))
    # Training images stay uint8 (N, C, H, W), a quarter of float's memory; each batch becomes 0..1 floats,
    # is augmented on that scale, then normalised.
    x_train = torch.as_tensor(np.array(data["x_train"]), device=device).permute(0, 3, 1, 2)
    y_train = torch.as_tensor(np.array(data["y_train"]), device=device)
    y_val = torch.as_tensor(np.array(data["y_val"]), device=device)
    augment = sweep.trial_augment(params)
    augmenter = Augmenter(augment, x_train.shape[2], len(classes), multilabel)
    x_train, y_train = offline_copies(x_train, y_train, augmenter, augment.offline_copies)
    labels_train = y_train.cpu().numpy()

    def batch_input(images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.float().div_(255)
        if augmenter.active:
            images, target = augmenter(images, target)
        return normalize(images, mean, std), target

    max_epochs = sweep.scheduler.max_epochs
    steps_per_epoch = -(-len(x_train) // recipe.batch_size)
    loss_fn = make_loss(recipe, len(classes), multilabel).to(device)
    train_loss_fn = loss_fn  # validation loss stays unweighted, comparable across trials
    if recipe.class_weights == "balanced":
        weights = imbalance.loss_weights(labels_train, len(classes))
        train_loss_fn = make_loss(recipe, len(classes), multilabel, class_weights=weights).to(device)
    draw_weights = None
    if recipe.oversample > 0:
        draw_weights = torch.as_tensor(imbalance.sample_weights(labels_train, len(classes), recipe.oversample))
    shape = {"num_classes": len(classes), "in_channels": x_train.shape[1], "image_size": x_train.shape[2],
             "multilabel": multilabel}
    members = [
        Member(sweep.model, shape, model_params, recipe, seed, steps_per_epoch, max_epochs, device)
        for seed in range(recipe.seed, recipe.seed + sweep.search.repeats)
    ]
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
            train_loss = member.train_epoch(epoch, x_train, y_train, train_loss_fn, batch_input, draw_weights)
            val_probs, val_loss = predict(member.model, x_val, y_val, loss_fn, multilabel)
            member.fitting.end_epoch(val_loss)
            thresholds = None
            if multilabel:  # decision thresholds chosen on validation rows, stored to apply unchanged to test rows
                thresholds = metrics.tune_thresholds(val_probs, data["y_val"], recipe.threshold, recipe.fixed_threshold)
            scores = metrics.scores(val_probs, data["y_val"], prefix="val_",
                                    threshold=0.5 if thresholds is None else thresholds,
                                    classes=classes if multilabel else None)
            runs.append(({"train_loss": train_loss, "val_loss": val_loss, **scores}, val_probs, thresholds))
        val_metrics = aggregate([run[0] for run in runs])
        score = sign * val_metrics[sweep.search.metric]
        if score > state["best_score"]:
            # Only an improving epoch pays for the test-set pass: its predictions are the trial's.
            test_probs, _ = predict(members[0].model, x_test, None, loss_fn, multilabel)
            _, val_probs, thresholds = runs[0]
            best_predictions = {"val_probs": val_probs, "test_probs": test_probs, "classes": np.array(classes)}
            if thresholds is not None:
                best_predictions["thresholds"] = thresholds
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


class Member:
    """One seed's model and its optimizer and schedule (a trial has `search.repeats` of them)."""

    def __init__(self, model_name, shape, model_params, recipe, seed, steps_per_epoch, max_epochs, device):
        torch.manual_seed(seed)
        self.model = models.create(model_name, **shape, **model_params).to(device)
        # On a GPU: bfloat16 autocast (tensor cores, no loss scaling needed) and channels-last convolutions.
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.fitting = Fitting(recipe, self.model, steps_per_epoch, max_epochs)
        self.batch_size = recipe.batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def train_epoch(self, epoch: int, x, y, loss_fn, batch_input, draw_weights=None) -> float:
        """One pass over the training rows in a seeded random order; returns the mean training loss.

        `batch_input(images, target)` turns a uint8 batch into the model's input (augmented, normalised);
        with `draw_weights` the epoch is as many weighted draws with replacement (oversampling rare labels).
        """
        self.fitting.start_epoch(epoch)
        self.model.train()
        if draw_weights is None:
            order = torch.randperm(len(x), generator=self.generator).to(x.device)
        else:
            order = torch.multinomial(draw_weights, len(x), replacement=True, generator=self.generator).to(x.device)
        total_loss = 0.0
        for batch in order.split(self.batch_size):
            images, target = batch_input(x[batch], y[batch])
            with self.autocast:
                loss = loss_fn(self.model(images), target)
            self.fitting.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.fitting.step()
            total_loss += loss.item() * len(batch)
        return total_loss / len(x)

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
    return normalize(x, mean, std)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean, device=x.device)[:, None, None]) / torch.tensor(std, device=x.device)[:, None, None]


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
