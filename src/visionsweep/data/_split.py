import io
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from visionsweep.data._dataset import Dataset


@dataclass(frozen=True)
class Split:
    """Row indices into a Dataset. Stored once per sweep, so every trial and the ensemble agree."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, train=self.train, val=self.val, test=self.test)
        return buffer.getvalue()

    @classmethod
    def from_file(cls, path) -> "Split":
        with np.load(path, allow_pickle=False) as arrays:
            return cls(train=arrays["train"], val=arrays["val"], test=arrays["test"])


def make_split(dataset: Dataset, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """A stratified train/validation/test split; fractions are of all rows.

    Multi-label data is split by iterative stratification (scikit-multilearn), which keeps rare labels
    in every part. A dataset's own test rows are kept as the test set; validation rows come from the rest.
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
    return Split(train=np.sort(train), val=np.sort(val), test=np.sort(test))


def _stratified_split(rows, labels, share, seed):
    return train_test_split(rows, test_size=share, stratify=labels, random_state=seed)


def _iterative_split(rows, labels, share, seed):
    from skmultilearn.model_selection import IterativeStratification

    # It draws from the global np.random and refuses random_state (STACK.md): seed it here, restore after.
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        stratifier = IterativeStratification(n_splits=2, order=1, sample_distribution_per_fold=[share, 1.0 - share])
        kept, taken = next(stratifier.split(rows[:, None], labels))
    finally:
        np.random.set_state(saved)
    return rows[kept], rows[taken]
