import contextlib
import math
from dataclasses import dataclass

import numpy as np

from visionsweep.data._dataset import DataError, Dataset
from visionsweep.task import is_multilabel

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
    skipped = f" (after leaving out {len(dataset.bad_files)} unreadable files)" if dataset.bad_files else ""
    check_split(dataset.labels, dataset.classes, val_fraction, test_fraction, folds, dataset.test_rows, skipped)
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


def check_split(
    labels: np.ndarray, classes: tuple[str, ...], val_fraction: float, test_fraction: float, folds: int = 1,
    test_rows: np.ndarray | None = None, note: str = "",
) -> None:
    """Raises DataError when the rows cannot be split as asked, before any splitting starts.

    Stratification puts every class (every label) in every part of the split, so each needs at least as many
    rows as there are parts: training, validation and test, or the folds and test with `folds` >= 2 (a
    given test set's rows count for test only). Multi-class data also needs two classes, and each part at
    least one row per class.
    """
    multilabel = is_multilabel(labels)
    kind = "label" if multilabel else "class"
    if multilabel and not classes:
        raise DataError("data.dataset: no labels; a multi-label dataset needs one label or more")
    if not multilabel and len(classes) < 2:
        raise DataError(f"data.dataset: one class only ({', '.join(classes)}); a classifier needs two or more, "
                        "e.g. one folder of images per class")
    development = labels if test_rows is None else np.delete(labels, test_rows, axis=0)
    parts = ["training", "validation"] if folds < 2 else [f"{folds} folds"]
    if test_rows is None:
        parts.append("test")
    needed = max(folds, 2) + (test_rows is None)
    per_class = development.sum(axis=0) if multilabel else np.bincount(development, minlength=len(classes))
    few = [f"{name} {int(count)}" for name, count in zip(classes, per_class) if count < needed]
    if few:
        where = "" if test_rows is None else " outside the given test set"
        raise DataError(
            f"data.dataset: too few rows{where}{note} for a stratified split into {' + '.join(parts)}, which "
            f"needs {needed} of each {kind}: {', '.join(few)}; add images of each, or remove the {kind}"
        )
    if multilabel:
        return
    # Row counts as scikit-learn's train_test_split takes them (it rounds the held-out part up).
    rest, val_share = len(development), val_fraction
    if test_rows is None:
        n_test = math.ceil(test_fraction * rest)
        _part_holds_classes("data.test_fraction", test_fraction, n_test, len(classes), note)
        rest -= n_test
        val_share = val_fraction / (1 - test_fraction)
    n_val = math.ceil(val_share * rest)
    _part_holds_classes("data.val_fraction", val_fraction, n_val, len(classes), note)
    if rest - n_val < len(classes):
        raise DataError(f"data.dataset: {rest - n_val} training rows remain{note}, fewer than the {len(classes)} "
                        "classes; lower data.val_fraction or data.test_fraction, or add images")


def _part_holds_classes(field: str, fraction: float, rows: int, classes: int, note: str) -> None:
    if rows < classes:
        raise DataError(f"{field}: {fraction:.3g} gives {rows} rows{note}, fewer than the {classes} classes; a "
                        "stratified split needs one row of each class in every part: raise it or add images")


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
    if is_multilabel(labels):
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
    # IterativeStratification draws from the global np.random and refuses random_state (docs/stack.md):
    # seed it here, restore it after.
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)
