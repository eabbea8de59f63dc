"""Scores of predicted probabilities, named by split and measure (`val_accuracy`, `test_micro_f1`), and
multi-label decision thresholds tuned on validation rows."""

import re

import numpy as np

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)  # candidate probabilities when tuning thresholds


def scores(probs: np.ndarray, labels: np.ndarray, prefix: str = "", threshold=0.5, classes=None) -> dict[str, float]:
    """Multi-class when `labels` is (N,) class indices; multi-label when it is an (N, C) multi-hot.

    `threshold` is one probability or one per class. With `classes`, multi-label scores add each class's
    precision, recall and F1 (`val_f1_<class>`).
    """
    if labels.ndim == 1:
        return {f"{prefix}accuracy": float(np.mean(probs.argmax(axis=1) == labels))}
    # Imported here: scikit-learn takes 0.8 s to import, which a multi-class trial process need not pay.
    from sklearn.metrics import f1_score, hamming_loss, precision_recall_fscore_support

    predicted = probs >= np.asarray(threshold)
    measures = {
        "micro_f1": float(f1_score(labels, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float(np.mean((predicted == labels.astype(bool)).all(axis=1))),
        "hamming_loss": float(hamming_loss(labels, predicted)),
    }
    if classes is not None:
        precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average=None, zero_division=0)
        for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
            measures.update({f"{name}_{metric_name(c)}": float(v) for c, v in zip(classes, values)})
    return {f"{prefix}{name}": value for name, value in measures.items()}


def tune_thresholds(probs: np.ndarray, labels: np.ndarray, how: str, fixed: float = 0.5) -> np.ndarray:
    """Per-class decision thresholds (C,) for multi-label probabilities, chosen on these (validation) rows.

    fixed: `fixed` for every class; global: the one grid value that maximises micro-F1; per_class: for
    each class the grid value that maximises its F1 (`fixed` for a class with no positive row here).
    """
    classes = probs.shape[1]
    if how == "fixed":
        return np.full(classes, fixed, np.float32)
    truth = labels.astype(bool)[:, :, None]
    predicted = probs[:, :, None] >= THRESHOLD_GRID  # (N, C, thresholds)
    tp = (predicted & truth).sum(axis=0)
    fp = (predicted & ~truth).sum(axis=0)
    fn = (~predicted & truth).sum(axis=0)
    if how == "global":
        micro = 2 * tp.sum(0) / np.maximum(2 * tp.sum(0) + fp.sum(0) + fn.sum(0), 1)
        return np.full(classes, THRESHOLD_GRID[micro.argmax()], np.float32)
    if how != "per_class":
        raise ValueError(f"threshold {how!r}; allowed: fixed, global, per_class")
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    chosen = THRESHOLD_GRID[f1.argmax(axis=1)]
    return np.where(truth.any(axis=0)[:, 0], chosen, fixed).astype(np.float32)


def metric_name(text: str) -> str:
    """A class name as MLflow accepts it in a metric name (letters, digits, _ - . / and space)."""
    return re.sub(r"[^\w\-./ ]", "_", str(text))


def search_metrics(multilabel: bool) -> tuple[str, ...]:
    """The validation metrics a trial reports each epoch, for multi-class or multi-label data."""
    measures = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss") if multilabel else ("accuracy",)
    return ("val_loss", *(f"val_{m}" for m in measures))


def primary_measure(labels: np.ndarray) -> str:
    """The measure tables lead with: accuracy for multi-class, micro-F1 for multi-label."""
    return "accuracy" if labels.ndim == 1 else "micro_f1"
