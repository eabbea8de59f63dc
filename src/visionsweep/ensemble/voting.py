"""Voting over members' probabilities, shaped (members, rows, classes). Pure numpy."""

import numpy as np

from visionsweep import metrics


def soft_vote(probs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean probability over members, or the weighted mean when `weights` (members,) are given."""
    if weights is None:
        return probs.mean(axis=0)
    weights = np.asarray(weights, dtype=np.float64)
    # In the probabilities' own dtype: a float64 weight vector would copy all of `probs` to float64.
    return np.tensordot((weights / weights.sum()).astype(probs.dtype), probs, axes=1)


def centre_on_thresholds(probs: np.ndarray, stored: list[dict]) -> np.ndarray:
    """Multi-label members' probabilities shifted so that each member's own tuned thresholds sit at 0.5.

    Every member then votes with the decisions it made alone, and voting at 0.5 needs no shared threshold.
    """
    thresholds = np.stack([metrics.decision_thresholds(p, probs.shape[2]) for p in stored])
    return np.clip(probs - thresholds[:, None, :] + 0.5, 0, 1).astype(np.float32)


def hard_vote(probs: np.ndarray, multilabel: bool = False, threshold: float = 0.5) -> np.ndarray:
    """Majority vote, returned as scores in 0..1 whose argmax (or >= threshold, multi-label) is the decision.

    Multi-class: each member votes for its argmax class; the score is the vote share, with ties between
    classes of the same count going to the higher mean probability. Multi-label: per label, a member
    votes yes when its probability reaches `threshold`; a tied vote goes by the mean probability; the
    score is the 0/1 decision.
    """
    members, rows, classes = probs.shape
    mean = probs.mean(axis=0)
    if multilabel:
        yes = (probs >= threshold).sum(axis=0)
        decided = np.where(2 * yes == members, mean >= threshold, 2 * yes > members)
        return decided.astype(np.float32)
    cells = np.arange(rows) * classes + probs.argmax(axis=2)  # (members, rows): the voted cell of each row
    votes = np.bincount(cells.ravel(), minlength=rows * classes).reshape(rows, classes)
    # Counts dominate; the mean probability (< 1) only breaks ties between equal counts.
    return ((votes + mean / 2) / (members + 0.5)).astype(np.float32)
