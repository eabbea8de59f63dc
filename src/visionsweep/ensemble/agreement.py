"""How much members agree: pairwise disagreement and the correlation of their errors. Pure numpy."""

import numpy as np

from visionsweep.task import is_multilabel


def member_agreement(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """(members, members) matrices over the rows of `probs` (members, rows, classes).

    disagreement: share of rows (multi-label: row-label cells) on which two members decide differently.
    error_correlation: Pearson correlation of the members' 0/1 error indicators (NaN for a member that
    is never or always wrong).
    """
    members = len(probs)
    if not is_multilabel(labels):
        decided = probs.argmax(axis=2).astype(np.int16)
        errors = decided != labels
    else:
        decided = (probs >= threshold).reshape(members, -1)
        errors = decided != labels.reshape(1, -1).astype(bool)
    # Pair by pair: comparing small integers is far cheaper than a one-hot matrix product.
    disagreement = np.zeros((members, members), dtype=np.float32)
    for i in range(members - 1):
        disagreement[i, i + 1 :] = np.count_nonzero(decided[i] != decided[i + 1 :], axis=1) / decided.shape[1]
    disagreement += disagreement.T
    errors = errors.astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.corrcoef(errors) if members > 1 else np.ones((1, 1))
    return {"disagreement": disagreement, "error_correlation": np.asarray(correlation, np.float32)}


def mean_off_diagonal(matrix: np.ndarray) -> float:
    """The mean over distinct pairs (NaN pairs ignored); NaN for a single member."""
    if len(matrix) < 2:
        return float("nan")
    return float(np.nanmean(matrix[~np.eye(len(matrix), dtype=bool)]))
