"""The training recipe of a trial, built from its `TrainConfig`: optimizer, learning-rate schedule, loss,
early stopping and two-phase fine-tuning. Every choice here is a value a sweep can search.

    fitting = Fitting(recipe, model, steps_per_epoch, max_epochs)
    for epoch ...:
        fitting.start_epoch(epoch)           # two-phase fine-tuning switches here
        for batch ...: loss.backward(); fitting.step()
        fitting.end_epoch(val_loss)          # reduce-on-plateau looks at the validation loss
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import lr_scheduler

from visionsweep.config import TrainConfig
from visionsweep.task import Task
from visionsweep.trainables import losses

CYCLE_MOMENTUM = (0.85, 0.95)  # onecycle/cyclic: momentum (Adam: beta1) is high while lr is low, and back
WARMUP_START = 0.01  # warm-up starts at this fraction of lr
CYCLIC_BASE = 0.1  # cyclic: lr moves between this fraction of lr and lr


def make_optimizer(recipe: TrainConfig, params, lr: float | None = None) -> torch.optim.Optimizer:
    """Weight decay is L2 (added to the gradient) for every optimizer but adamw, where it is decoupled."""
    lr = recipe.lr if lr is None else lr
    decay = recipe.weight_decay
    if recipe.optimizer == "sgd":
        nesterov = recipe.nesterov and recipe.momentum > 0
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, nesterov=nesterov, weight_decay=decay)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=recipe.momentum, weight_decay=decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=decay, amsgrad=recipe.optimizer == "amsgrad")


class LrSchedule:
    """torch schedulers stepped at their moments: per batch (all but plateau), per epoch on val_loss (plateau)."""

    def __init__(self, per_batch: lr_scheduler.LRScheduler | None, per_epoch: lr_scheduler.ReduceLROnPlateau | None):
        self.per_batch, self.per_epoch = per_batch, per_epoch

    def after_batch(self) -> None:
        if self.per_batch:
            self.per_batch.step()

    def after_epoch(self, val_loss: float) -> None:
        if self.per_epoch:
            self.per_epoch.step(val_loss)

    def state_dict(self) -> dict:
        return {k: s.state_dict() for k, s in (("per_batch", self.per_batch), ("per_epoch", self.per_epoch)) if s}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            getattr(self, key).load_state_dict(value)


def make_schedule(recipe: TrainConfig, optimizer, steps_per_epoch: int, epochs: int) -> LrSchedule:
    """The learning rate over `epochs` epochs, after `warmup_epochs` of linear warm-up (onecycle warms up itself)."""
    total = steps_per_epoch * epochs
    warmup = 0 if recipe.schedule == "onecycle" else min(total - 1, round(recipe.warmup_epochs * steps_per_epoch))
    steps = max(1, total - warmup)
    peaks = [group["lr"] for group in optimizer.param_groups]
    defaults = optimizer.defaults
    cycle_momentum = recipe.cycle_momentum and ("betas" in defaults or defaults.get("momentum", 0) > 0)
    main, per_epoch = None, None
    if recipe.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    elif recipe.schedule == "onecycle":
        main = lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total, cycle_momentum=cycle_momentum,
                                       base_momentum=CYCLE_MOMENTUM[0], max_momentum=CYCLE_MOMENTUM[1])
    elif recipe.schedule == "cyclic":
        main = lr_scheduler.CyclicLR(
            optimizer, base_lr=[p * CYCLIC_BASE for p in peaks], max_lr=peaks,
            step_size_up=max(1, round(recipe.cycle_epochs * steps_per_epoch / 2)), cycle_momentum=cycle_momentum,
            base_momentum=CYCLE_MOMENTUM[0], max_momentum=CYCLE_MOMENTUM[1],
        )
    elif recipe.schedule == "step":
        main = lr_scheduler.StepLR(optimizer, step_size=recipe.step_epochs * steps_per_epoch, gamma=recipe.step_gamma)
    elif recipe.schedule == "plateau":
        per_epoch = lr_scheduler.ReduceLROnPlateau(optimizer, factor=recipe.plateau_factor,
                                                   patience=recipe.plateau_patience)
    if not warmup:
        return LrSchedule(main, per_epoch)
    warm = lr_scheduler.LinearLR(optimizer, start_factor=WARMUP_START, total_iters=warmup)
    per_batch = lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup]) if main else warm
    return LrSchedule(per_batch, per_epoch)


class Loss(nn.Module):
    """loss(logits, labels) with labels as the data gives them: class indices (N,) or a multi-hot (N, C).

    bce and mse on multi-class data compare against the one-hot labels; mse compares probabilities (softmax for
    multi-class, sigmoid for multi-label), the form prediction uses. Label smoothing moves targets towards
    uniform: 1/C per class for multi-class, 1/2 per label for multi-label. Class weights (data/imbalance.py) scale
    each class's term: cross-entropy's `weight`, BCE's `pos_weight` (the positive term), MSE's squared error,
    focal and asymmetric loss's positive term (losses.py; `focusing` holds their exponents and clip).
    """

    def __init__(self, kind: str, num_classes: int, multilabel: bool, label_smoothing: float = 0.0,
                 class_weights=None, focusing: dict | None = None):
        super().__init__()
        self.focusing = focusing or {}
        self.kind = ("bce" if multilabel else "cross_entropy") if kind == "auto" else kind
        if self.kind == "cross_entropy" and multilabel:
            raise ValueError("train.loss cross_entropy needs single-label data; use bce or mse for multi-label")
        self.num_classes, self.multilabel, self.smoothing = num_classes, multilabel, label_smoothing
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("weights", weights)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.kind == "cross_entropy":
            return F.cross_entropy(logits, labels, weight=self.weights, label_smoothing=self.smoothing)
        # Multi-hot labels, and soft labels (MixUp, CutMix), are already targets; class indices become one-hot.
        soft = self.multilabel or labels.is_floating_point()
        target = labels.float() if soft else F.one_hot(labels, self.num_classes).float()
        if self.smoothing:
            target = target * (1 - self.smoothing) + self.smoothing / (2 if self.multilabel else self.num_classes)
        if self.kind == "bce":
            return F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.weights)
        if self.kind == "focal":
            return losses.focal(logits, target, self.multilabel, self.focusing.get("gamma", 2.0), self.weights)
        if self.kind == "asymmetric":
            settings = {k: self.focusing[k] for k in ("gamma_pos", "gamma_neg", "clip") if k in self.focusing}
            return losses.asymmetric(logits, target, weights=self.weights, **settings)
        probs = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)
        squared = (probs - target) ** 2
        return (squared * self.weights if self.weights is not None else squared).mean()


def make_loss(recipe: TrainConfig, task: Task, class_weights=None) -> Loss:
    focusing = {"gamma": recipe.focal_gamma, "gamma_pos": recipe.asl_gamma_pos, "gamma_neg": recipe.asl_gamma_neg,
                "clip": recipe.asl_clip}
    return Loss(recipe.loss, task.num_classes, task.multilabel, recipe.label_smoothing, class_weights, focusing)


@dataclass
class EarlyStopping:
    """Ends a trial after `patience` epochs without an improvement above `min_delta` (scores: higher is better)."""

    patience: int  # epochs; 0: never stop early
    min_delta: float = 0.0
    best: float = float("-inf")
    stale: int = 0  # epochs since the last improvement

    def update(self, score: float) -> bool:
        """Records an epoch's score; True when training should stop."""
        if score > self.best + self.min_delta:
            self.best, self.stale = score, 0
        else:
            self.stale += 1
        return self.patience > 0 and self.stale >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)


class Fitting:
    """One model's optimizer and schedule for a whole trial, including two-phase fine-tuning.

    With `head_epochs`, phase one trains only `model.head` (the rest frozen) at `lr` for head_epochs; phase two
    trains everything the model itself leaves trainable, at lr / unfreeze_lr_factor, with a fresh optimizer and
    schedule over the remaining epochs.
    """

    def __init__(self, recipe: TrainConfig, model: nn.Module, steps_per_epoch: int, max_epochs: int):
        self.recipe, self.model = recipe, model
        self.steps_per_epoch, self.max_epochs = steps_per_epoch, max_epochs
        self.trainable = [p for p in model.parameters() if p.requires_grad]  # the model's own freeze setting
        self.phase = 0
        if recipe.head_epochs:
            if not isinstance(getattr(model, "head", None), nn.Module):
                raise ValueError("train.head_epochs (two-phase fine-tuning) needs a model with a head: a torchvision "
                                 "backbone or feature_concat")
            if recipe.head_epochs >= max_epochs:
                raise ValueError(f"train.head_epochs {recipe.head_epochs} leaves no epoch of scheduler.max_epochs "
                                 f"{max_epochs} for fine-tuning all layers")
            self._enter(1)
        else:
            self._enter(2)

    def _enter(self, phase: int) -> None:
        head_only = phase == 1
        head = {id(p) for p in self.model.head.parameters()} if head_only else set()
        for p in self.trainable:
            p.requires_grad_(not head_only or id(p) in head)
        params = [p for p in self.trainable if p.requires_grad]
        lr = self.recipe.lr / self.recipe.unfreeze_lr_factor if self.recipe.head_epochs and not head_only else None
        epochs = self.recipe.head_epochs if head_only else self.max_epochs - self.recipe.head_epochs
        self.optimizer = make_optimizer(self.recipe, params, lr)
        self.schedule = make_schedule(self.recipe, self.optimizer, self.steps_per_epoch, epochs)
        self.phase = phase

    def start_epoch(self, epoch: int) -> None:
        if self.phase == 1 and epoch > self.recipe.head_epochs:
            self._enter(2)

    def step(self) -> None:
        self.optimizer.step()
        self.schedule.after_batch()

    def end_epoch(self, val_loss: float) -> None:
        self.schedule.after_epoch(val_loss)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"phase": self.phase, "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state["phase"] != self.phase:
            self._enter(state["phase"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
