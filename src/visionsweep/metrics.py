"""Scores of predicted probabilities, named by split and measure (`val_accuracy`, `test_micro_f1`), and
multi-label decision thresholds: tuned on validation rows, stored with a trial's predictions, and the one source
of every decision made from them afterwards (`decision_thresholds`). Which of them apply is the task's business
(task.py)."""

import re

import numpy as np


def multiclass_scores(probs: np.ndarray, labels: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Accuracy of the argmax against class indices (N,)."""
    return {f"{prefix}accuracy": float(np.mean(probs.argmax(axis=1) == labels))}


def multilabel_scores(probs: np.ndarray, labels: np.ndarray, prefix: str = "", threshold=0.5,
                      classes=None) -> dict[str, float]:
    """Scores against a multi-hot (N, C) at `threshold`: one probability or one per class. With `classes`, each
    class's precision, recall and F1 too (`val_f1_<class>`)."""
    # Imported here: scikit-learn takes 0.8 s to import, which a multi-class trial process need not pay.
    from sklearn.metrics import f1_score, hamming_loss

    predicted = probs >= np.asarray(threshold)
    measures = {
        "micro_f1": float(f1_score(labels, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float(np.mean((predicted == labels.astype(bool)).all(axis=1))),
        "hamming_loss": float(hamming_loss(labels, predicted)),
    }
    if classes is not None:
        for name, values in per_class_scores(probs, labels, threshold).items():
            measures.update({f"{name}_{metric_name(c)}": float(v) for c, v in zip(classes, values)})
    return {f"{prefix}{name}": value for name, value in measures.items()}


def per_class_scores(probs: np.ndarray, labels: np.ndarray, threshold=0.5) -> dict[str, np.ndarray]:
    """Multi-label: each class's precision, recall and F1 (C,) at `threshold` (one, or one per class); 0 where
    undefined. The logged `test_f1_<class>` and the report's per-class table both come from here."""
    from sklearn.metrics import precision_recall_fscore_support

    predicted = probs >= np.asarray(threshold)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average=None, zero_division=0)
    return {"precision": precision, "recall": recall, "f1": f1}


def decision_thresholds(predictions, num_classes: int) -> np.ndarray:
    """The multi-label thresholds a trial decides with: the ones stored beside its predictions (tuned on its
    validation rows, or `train.fixed_threshold`), 0.5 for predictions stored without. Its logged test metrics,
    the report, its registered model and its vote in an ensemble all read them from here."""
    if "thresholds" in predictions:
        return np.asarray(predictions["thresholds"], np.float32)
    return np.full(num_classes, 0.5, np.float32)


def never_predicted(probs: np.ndarray, classes, threshold=None) -> list[str]:
    """The classes that no row is given: multi-label at `threshold` (one, or one per class), multi-class
    (`threshold` None) as nobody's argmax. A rare label lost this way scores F1 0 whatever its probabilities."""
    if threshold is None:
        given = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) > 0
    else:
        given = (probs >= np.asarray(threshold)).any(axis=0)
    return [str(c) for c, g in zip(classes, given) if not g]


# Multi-label decision methods (train.threshold, ensemble --thresholds); tune_thresholds documents each.
THRESHOLD_METHODS = ("fixed", "global", "per_class", "micro_f1")
# The default: it keeps micro-F1, the multi-label headline, and still predicts every label (bench/rare_labels.py).
DEFAULT_THRESHOLD_METHOD = "micro_f1"
MICRO_F1_ROUNDS = 5  # passes over the labels; each pass can only raise validation micro-F1, most settle in 2-3


def tune_thresholds(probs: np.ndarray, labels: np.ndarray, how: str, fixed: float = 0.5) -> np.ndarray:
    """Per-class decision thresholds (C,) for multi-label probabilities, chosen on these (validation) rows.

    fixed: `fixed` for every class; global: the one threshold that maximises micro-F1; per_class: for each
    class the threshold that maximises its F1 (`fixed` for a class with no positive row here); micro_f1: one
    threshold per class, chosen together to maximise micro-F1 (each class in turn, the others held, from the
    per_class ones). per_class lifts rare labels at the cost of micro-F1 (a label with a poor F1 buys its
    recall with many false positives); micro_f1 keeps micro-F1 and still cuts each label at or below its
    highest-scoring positive row, so every label with positive rows here keeps at least one of them.
    The candidates are the probabilities themselves: every cut between two neighbouring distinct values, so a
    rare label whose probabilities all sit far below 0.5 (or below any fixed grid) can still be predicted.
    """
    classes = probs.shape[1]
    if how == "fixed":
        return np.full(classes, fixed, np.float32)
    truth = labels.astype(bool)
    if how == "global":  # micro-F1 is the F1 of every (row, label) pair pooled
        return np.full(classes, best_f1_cut(probs.ravel(), truth.ravel(), fixed), np.float32)
    if how not in THRESHOLD_METHODS:
        raise ValueError(f"threshold {how!r}; allowed: {', '.join(THRESHOLD_METHODS)}")
    cuts = np.array([best_f1_cut(probs[:, c], truth[:, c], fixed) for c in range(classes)], np.float32)
    if how == "micro_f1":
        cuts = _micro_f1_cuts(probs, truth, cuts)
    return cuts


def _micro_f1_cuts(probs: np.ndarray, truth: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Coordinate ascent on micro-F1 = 2 TP / (2 TP + FP + FN) pooled over classes, from `cuts`."""
    cuts = cuts.copy()
    positives = truth.sum(axis=0)
    decided = probs >= cuts
    tp = (decided & truth).sum(axis=0)
    errors = decided.sum(axis=0) + positives - 2 * tp  # FP + FN per class
    for _ in range(MICRO_F1_ROUNDS):
        moved = False
        for c in np.flatnonzero(positives):
            others_tp, others_total = tp.sum() - tp[c], (2 * tp + errors).sum() - (2 * tp[c] + errors[c])
            cut = best_f1_cut(probs[:, c], truth[:, c], float(cuts[c]), others_tp, others_total)
            if np.float32(cut) != cuts[c]:
                cuts[c], moved = cut, True
                kept = probs[:, c] >= cuts[c]
                tp[c] = (kept & truth[:, c]).sum()
                errors[c] = kept.sum() + positives[c] - 2 * tp[c]
        if not moved:
            break
    return cuts


def best_f1_cut(scores: np.ndarray, positive: np.ndarray, default: float = 0.5, others_tp: int = 0,
                others_total: int = 0) -> float:
    """The threshold t at which deciding `scores >= t` has the highest F1 against `positive` (`default` when
    there is no positive), keeping at least one positive row; with `others_tp` and `others_total` (2 TP + FP + FN of the other classes), the
    highest micro-F1 of these decisions pooled with theirs. t lies halfway between the lowest score kept and the
    next lower one, so unseen rows that score a little lower than those are decided alike; the highest of
    equally good thresholds wins."""
    if not positive.any():
        return default
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order].astype(np.float64), positive[order]
    last_of_value = np.r_[ranked[1:] != ranked[:-1], True]  # deciding >= a value keeps all rows that tie with it
    tp, kept = np.cumsum(hits)[last_of_value], np.flatnonzero(last_of_value) + 1
    values = ranked[last_of_value]
    # 2 TP / (2 TP + FP + FN), with TP + FP = kept and TP + FN = positives
    f1 = 2 * (tp + others_tp) / (kept + positive.sum() + others_total)
    best = int(np.where(tp > 0, f1, -1).argmax())  # a cut that keeps no positive row would drop the class
    below = values[best + 1] if best + 1 < len(values) else 0.0
    halfway = (values[best] + below) / 2
    # Thresholds are stored as float32: a halfway point that rounds down onto `below` would keep its rows too.
    return float(halfway if np.float32(halfway) > below else values[best])


def metric_name(text: str) -> str:
    """A class name as MLflow accepts it in a metric name (letters, digits, _ - . / and space)."""
    return re.sub(r"[^\w\-./ ]", "_", str(text))
