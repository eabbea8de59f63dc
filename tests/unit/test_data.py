import numpy as np

from visionsweep import data
from visionsweep.config import DataConfig


def test_digits_decodes_to_uint8_images_and_labels():
    dataset = data.load(DataConfig(dataset="digits"))
    assert dataset.images.shape == (1797, 8, 8, 1) and dataset.images.dtype == np.uint8
    assert dataset.images.max() == 255 and dataset.num_classes == 10 and not dataset.multilabel


def test_split_is_stratified_disjoint_and_reproducible():
    dataset = data.load(DataConfig(dataset="digits"))
    split = data.make_split(dataset, val_fraction=0.2, test_fraction=0.2, seed=3)
    rows = np.concatenate([split.train, split.val, split.test])
    assert len(rows) == len(np.unique(rows)) == len(dataset.labels)
    for part in (split.val, split.test):
        assert abs(len(part) - 0.2 * len(dataset.labels)) <= 1
        shares = np.bincount(dataset.labels[part], minlength=10) / len(part)
        np.testing.assert_allclose(shares, 0.1, atol=0.01)
    again = data.make_split(dataset, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert all(np.array_equal(getattr(split, p), getattr(again, p)) for p in ("train", "val", "test"))
    assert dataset.fingerprint() == data.load(DataConfig(dataset="digits")).fingerprint()


def test_folds_deal_every_development_row_once_stratified_and_reproducibly():
    dataset = data.load(DataConfig(dataset="digits"))
    split = data.make_split(dataset, val_fraction=0.2, test_fraction=0.2, seed=3, folds=4)
    assert len(split.folds) == len(split.development) == len(split.train) + len(split.val)
    assert np.bincount(split.folds).tolist() == [360, 359, 359, 359]  # 1437 rows in 4 folds
    labels = dataset.labels[split.development]
    for fold in range(4):
        np.testing.assert_allclose(np.bincount(labels[split.folds == fold], minlength=10) / 359, 0.1, atol=0.012)
    again = data.make_split(dataset, val_fraction=0.2, test_fraction=0.2, seed=3, folds=4)
    assert np.array_equal(split.folds, again.folds)
    assert data.make_split(dataset, val_fraction=0.2, test_fraction=0.2, seed=3).folds is None
