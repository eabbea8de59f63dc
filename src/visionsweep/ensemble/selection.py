"""Choosing and weighting members on the validation rows only. Pure numpy.

Probabilities are shaped (members, rows, classes); labels are class indices (rows,) for multi-class
or a multi-hot (rows, classes) for multi-label.
"""

import numpy as np

CANDIDATE_ROWS = 2048  # contested rows scored at once in a greedy round: bounds the (members, rows, classes) buffer


def greedy_selection(val_probs: np.ndarray, val_labels: np.ndarray, rounds: int = 50) -> np.ndarray:
    """Forward selection with replacement (Caruana et al., 2004): how often each member is picked.

    Each round adds the member whose addition gives the mean of the picks the best validation score
    (accuracy, or micro-F1 at 0.5 for multi-label); ties go to the earlier member, so rank the members
    best first. After `rounds` rounds, the picks up to the best-scoring round are kept.
    """
    members = len(val_probs)
    score = _accuracy_after_adding if val_labels.ndim == 1 else _micro_f1_after_adding
    total = np.zeros(val_probs.shape[1:], dtype=np.float32)
    picks, history = [], []
    for count in range(1, rounds + 1):
        scores = score(total, count, val_probs, val_labels)
        best = int(np.argmax(scores))
        picks.append(best)
        history.append(scores[best])
        total += val_probs[best]
    keep = int(np.argmax(history)) + 1
    return np.bincount(picks[:keep], minlength=members)


# One member adds at most 1 to any class's summed probability. So a row whose true class leads the
# sum by more than 1 stays right whichever member is added, one that trails by more than 1 stays
# wrong, and only the rows in between (few, once the ensemble has a few members) need scoring per
# candidate. The scores are exact.


def _accuracy_after_adding(total, count, probs, labels) -> np.ndarray:
    """Accuracy of argmax(total + probs[m]) for every member m, (members,)."""
    rows = np.arange(len(labels))
    true_score = total[rows, labels]
    rival = total.copy()
    rival[rows, labels] = -np.inf
    margin = true_score - rival.max(axis=1)
    contested = np.flatnonzero(np.abs(margin) <= 1)
    correct = np.count_nonzero(margin > 1)
    for start in range(0, len(contested), CANDIDATE_ROWS):
        part = contested[start : start + CANDIDATE_ROWS]
        sums = total[part] + probs[:, part]  # (members, rows, classes)
        correct = correct + (sums.argmax(axis=2) == labels[part]).sum(axis=1)
    return np.broadcast_to(correct / len(labels), (len(probs),))


def _micro_f1_after_adding(total, count, probs, labels) -> np.ndarray:
    """Micro-F1 of (total + probs[m]) / count >= 0.5 for every member m, (members,)."""
    cut = 0.5 * count
    flat_total, truth = total.reshape(-1), labels.reshape(-1).astype(bool)
    surely_yes = flat_total >= cut
    contested = np.flatnonzero(~surely_yes & (flat_total + 1 >= cut))
    true_pos = np.count_nonzero(surely_yes & truth)
    wrong = np.count_nonzero(surely_yes != truth) - np.count_nonzero(truth[contested])  # settled cells only
    flat_probs = probs.reshape(len(probs), -1)
    for start in range(0, len(contested), CANDIDATE_ROWS):
        part = contested[start : start + CANDIDATE_ROWS]
        yes = flat_total[part] + flat_probs[:, part] >= cut
        true_pos = true_pos + (yes & truth[part]).sum(axis=1)
        wrong = wrong + (yes != truth[part]).sum(axis=1)
    f1 = np.where(true_pos + wrong > 0, 2 * true_pos / np.maximum(2 * true_pos + wrong, 1), 1.0)
    return np.broadcast_to(f1, (len(probs),))


def fit_weights(val_probs: np.ndarray, val_labels: np.ndarray, iterations: int = 200, tol: float = 1e-6) -> np.ndarray:
    """Soft-voting weights (members,), summing to 1, that maximise the validation likelihood.

    The mixture's likelihood of the truth only needs each member's probability of the true class
    (multi-class) or of the true 0/1 value per label (multi-label), and is concave in the weights,
    so the EM update for mixture weights climbs to the optimum; it stops when the mean
    log-likelihood gains less than `tol` in an iteration.
    """
    members = len(val_probs)
    if val_labels.ndim == 1:
        truth = val_probs[:, np.arange(len(val_labels)), val_labels]
    else:
        truth = np.where(val_labels.astype(bool)[None], val_probs, 1 - val_probs).reshape(members, -1)
    truth = np.ascontiguousarray(np.clip(truth, 1e-7, 1.0), dtype=np.float32)  # row-major: 10x faster products
    weights = np.full(members, 1 / members, dtype=np.float32)
    mixture = weights @ truth
    likelihood = np.log(mixture).mean()
    for _ in range(iterations):
        weights = weights * (truth @ (1 / mixture)) / truth.shape[1]
        weights /= weights.sum()
        mixture = weights @ truth
        previous, likelihood = likelihood, np.log(mixture).mean()
        if likelihood - previous < tol:
            break
    return weights.astype(np.float64)
