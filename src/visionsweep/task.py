"""The classification task the labels make: multi-class or multi-label, and everything that differs by it.

Labels are class indices (N,) for a multi-class task and a multi-hot (N, C) for a multi-label one;
`is_multilabel(labels)` is the one place that tells them apart (`Task.of(labels, classes)` asks it). The rest
of visionsweep asks the task: how logits become probabilities, how probabilities become decisions, which measures
are scored, which loss fits by default, and where per-class decision thresholds come from (computed by `metrics`).

    task = Task.of(data.y_train, data.classes)
    probs = task.probabilities(model(x))                        # softmax, or sigmoid per label
    cut = task.thresholds(val_probs, data.y_val, "micro_f1")    # None for multi-class
    task.scores(val_probs, data.y_val, "val_", cut)             # {"val_accuracy": ...} or micro-F1 & co.
"""

import numpy as np

from visionsweep import metrics


def is_multilabel(labels) -> bool:
    """Whether `labels` (numpy or torch) are multi-hot rows (N, C), not class indices (N,)."""
    return np.ndim(labels) == 2


class Task:
    """Multi-class or multi-label classification over `classes`. Use `Task.of(labels, classes)`."""

    multilabel: bool
    name: str  # for people: "multi-class", "multi-label"
    measures: tuple[str, ...]  # what `scores` reports (before the split prefix)
    primary_measure: str  # the measure tables lead with
    default_loss: str  # train.loss auto

    def __init__(self, classes):
        self.classes = tuple(str(c) for c in classes)

    @staticmethod
    def of(labels: np.ndarray, classes) -> "Task":
        """The task of these labels: class indices (N,) are multi-class, a multi-hot (N, C) is multi-label."""
        return (MultiLabel if is_multilabel(labels) else MultiClass)(classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def search_metrics(self) -> tuple[str, ...]:
        """The validation metrics a trial reports each epoch: `search.metric` must be one of them."""
        return ("val_loss", *(f"val_{m}" for m in self.measures))

    def probabilities(self, logits):
        """A model's outputs (a torch tensor, rows x classes) as probabilities."""
        raise NotImplementedError

    def decide(self, probs: np.ndarray, thresholds=None) -> np.ndarray:
        """Predicted labels, in the form the labels take."""
        raise NotImplementedError

    def thresholds(self, probs: np.ndarray, labels: np.ndarray, how: str, fixed: float = 0.5) -> np.ndarray | None:
        """Per-class decision thresholds chosen on these (validation) rows; None where decisions take none."""
        return None

    def scores(self, probs: np.ndarray, labels: np.ndarray, prefix: str = "", thresholds=None,
               per_class: bool = False) -> dict[str, float]:
        """Every measure of `probs` against `labels`, named `<prefix><measure>`; with `per_class`, multi-label
        scores add each class's precision, recall and F1."""
        raise NotImplementedError

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.classes == other.classes

    def __hash__(self) -> int:
        return hash((type(self), self.classes))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.classes)})"


class MultiClass(Task):
    """One class per image: softmax, argmax, accuracy, cross-entropy."""

    multilabel = False
    name = "multi-class"
    measures = ("accuracy",)
    primary_measure = "accuracy"
    default_loss = "cross_entropy"

    def probabilities(self, logits):
        return logits.softmax(dim=1)

    def decide(self, probs, thresholds=None):
        return np.asarray(probs).argmax(axis=-1)

    def scores(self, probs, labels, prefix="", thresholds=None, per_class=False):
        return metrics.multiclass_scores(probs, labels, prefix)


class MultiLabel(Task):
    """Any set of classes per image: a sigmoid per label, decided at thresholds, F1-type measures, BCE."""

    multilabel = True
    name = "multi-label"
    measures = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")
    primary_measure = "micro_f1"
    default_loss = "bce"

    def probabilities(self, logits):
        return logits.sigmoid()

    def decide(self, probs, thresholds=None):
        return np.asarray(probs) >= (0.5 if thresholds is None else np.asarray(thresholds))

    def thresholds(self, probs, labels, how, fixed=0.5):
        return metrics.tune_thresholds(probs, labels, how, fixed)

    def scores(self, probs, labels, prefix="", thresholds=None, per_class=False):
        return metrics.multilabel_scores(probs, labels, prefix, 0.5 if thresholds is None else thresholds,
                                         self.classes if per_class else None)
