import contextlib
from dataclasses import dataclass

import numpy as np

from visionsweep.data._dataset import Dataset

# scikit-learn and scikit-multilearn are imported where a split is made: importing them takes about 0.8 s,
# which trial processes (they import visionsweep.data for augmentation, never to split) need not pay.


@dataclass(frozen=True)
class Split:
    """Row indices into a Dataset. Stored once per sweep, so every trial and the ensemble agree."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    # With data.folds K >= 2: the fold (0 .. K-1) of each development row (`development` order).
    folds: np.ndarray | None = None

    @property
    def development(self) -> np.ndarray:
        """The rows that k-fold cross-validation divides: the training rows, then the validation rows."""
        return np.concatenate([self.train, self.val])


def make_split(dataset: Dataset, val_fraction: float, test_fraction: float, seed: int, folds: int = 1) -> Split:
    """A stratified train/validation/test split; fractions are of all rows.

    Multi-label data is split by iterative stratification (scikit-multilearn), which keeps rare labels
    in every part. A dataset's own test rows are kept as the test set; validation rows come from the rest.
    With `folds` K >= 2, the training and validation rows are also dealt into K stratified folds.
    """
    rows = np.arange(len(dataset.labels))
    labels = dataset.labels
    divide = _iterative_split if dataset.multilabel else _stratified_split
    if dataset.test_rows is not None:
        test = np.sort(dataset.test_rows)
        rest = np.setdiff1d(rows, test)
        val_share = val_fraction
    else:
        rest, test = divide(rows, labels, test_fraction, seed)
        val_share = val_fraction / (1 - test_fraction)
    train, val = divide(rest, labels[rest], val_share, seed)
    split = Split(train=np.sort(train), val=np.sort(val), test=np.sort(test))
    if folds < 2:
        return split
    return Split(split.train, split.val, split.test, _assign_folds(labels[split.development], folds, seed))


def _stratified_split(rows, labels, share, seed):
    from sklearn.model_selection import train_test_split

    return train_test_split(rows, test_size=share, stratify=labels, random_state=seed)


def _iterative_split(rows, labels, share, seed):
    from skmultilearn.model_selection import IterativeStratification

    stratifier = IterativeStratification(n_splits=2, order=1, sample_distribution_per_fold=[share, 1.0 - share])
    with _seeded_global_random(seed):
        kept, taken = next(stratifier.split(rows[:, None], labels))
    return rows[kept], rows[taken]


def _assign_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold of each row: stratified k-fold, iterative for multi-label labels."""
    if labels.ndim == 2:
        from skmultilearn.model_selection import IterativeStratification

        splitter = IterativeStratification(n_splits=k, order=1)
    else:
        from sklearn.model_selection import StratifiedKFold

        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    fold = np.empty(len(labels), dtype=np.int64)
    with _seeded_global_random(seed):
        for number, (_, held_out) in enumerate(splitter.split(np.zeros((len(labels), 1)), labels)):
            fold[held_out] = number
    return fold


@contextlib.contextmanager
def _seeded_global_random(seed: int):
    # IterativeStratification draws from the global np.random and refuses random_state (STACK.md):
    # seed it here, restore it after.
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)
