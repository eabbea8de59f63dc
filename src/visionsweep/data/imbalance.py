"""Imbalance handling from label counts: loss weights and oversampling weights, for class indices or multi-hot labels."""

import numpy as np

from visionsweep.task import is_multilabel


def label_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Training rows per class (multi-class) or per label (multi-label)."""
    if is_multilabel(labels):
        return labels.sum(axis=0).astype(np.float64)
    return np.bincount(labels, minlength=num_classes).astype(np.float64)


def loss_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """`balanced` weights: CE class weights as scikit-learn's, or BCE pos_weight negatives / positives per label.

    A class absent from the training rows gets weight 1 (nothing to balance).
    """
    counts = label_counts(labels, num_classes)
    present = counts > 0
    weights = np.ones(num_classes)
    if is_multilabel(labels):
        weights[present] = (len(labels) - counts[present]) / counts[present]
    else:
        # Imported here: scikit-learn takes 0.8 s to import, which a trial process without class weights need not pay.
        from sklearn.utils.class_weight import compute_class_weight

        classes = np.flatnonzero(present)
        weights[classes] = compute_class_weight("balanced", classes=classes, y=labels)
    return weights.astype(np.float32)


def sample_weights(labels: np.ndarray, num_classes: int, power: float) -> np.ndarray:
    """Per-row drawing weights count**-power of the row's rarest label: 0 is uniform, 1 sees each label equally often.

    Multi-label rows with no label count as one more group (\"no label\") of their own.
    """
    if not is_multilabel(labels):
        return label_counts(labels, num_classes)[labels] ** -power
    counts = label_counts(labels, num_classes)
    unlabelled = ~labels.any(axis=1)
    rarest = np.where(labels.astype(bool), counts, np.inf).min(axis=1)
    rarest[unlabelled] = max(int(unlabelled.sum()), 1)
    return rarest**-power
