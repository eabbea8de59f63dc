"""The folder layouts people bring, as small trees of real PNG and JPEG files (scikit-learn's digits): what is
detected, and the clear refusal when a set cannot be read or split, before anything is decoded or trained."""

import numpy as np
import pytest

from visionsweep import data
from visionsweep.config import DataConfig

from image_sets import class_folders, csv_set, digit, photo_set


def config(tmp_path, dataset, **settings):
    return DataConfig(dataset=str(dataset), image_size=8, cache_dir=str(tmp_path / "cache"), **settings)


def test_images_beside_an_annotations_folder_are_label_files_not_two_classes(tmp_path):
    root = photo_set(tmp_path / "photos")
    dataset = data.load(config(tmp_path, root))
    assert dataset.multilabel and dataset.classes == ("clouds", "sea") and len(dataset.labels) == 12
    assert dataset.labels.sum(axis=0).tolist() == [6, 4]
    assert data.load(config(tmp_path, root, format="label_files")).classes == ("clouds", "sea")
    listed = data.listing(config(tmp_path, root))
    assert listed.layout == "label_files: images/ + annotations/" and listed.counts() == {"clouds": 6, "sea": 4}
    with pytest.raises(data.DataError, match=r"holds images/ and annotations/ of <label>.txt files.*data.format: label_files"):
        data.listing(config(tmp_path, root, format="folders"))


def test_data_labels_names_the_label_folder_among_several(tmp_path):
    root = photo_set(tmp_path / "photos")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("taken in 2019\n")
    with pytest.raises(data.DataError, match=r"several folders hold .txt files \(annotations, notes\).*data.labels"):
        data.listing(config(tmp_path, root))
    assert data.listing(config(tmp_path, root, labels="annotations")).classes == ("clouds", "sea")
    with pytest.raises(data.DataError, match=r"data.labels 'tags': no such folder in .*photos"):
        data.listing(config(tmp_path, root, labels="tags"))


def test_csv_file_names_found_in_an_images_folder_beside_it(tmp_path):
    dataset = data.load(config(tmp_path, csv_set(tmp_path / "set")))
    assert dataset.classes == ("even", "odd") and dataset.labels.sum(axis=0).tolist() == [3, 3]
    assert len(dataset.images) == 6 and not dataset.bad_files


def test_csv_whose_paths_resolve_nowhere_says_so_and_names_the_folders_tried(tmp_path):
    table = csv_set(tmp_path / "set")
    (tmp_path / "set" / "images").rename(tmp_path / "set" / "pictures")
    with pytest.raises(data.DataError) as refused:
        data.listing(config(tmp_path, table))
    message = str(refused.value)
    assert "none of its 6 image paths (e.g. 'd0.png') names a file in" in message
    assert f"{tmp_path / 'set'} or {tmp_path / 'set' / 'images'}" in message and "set data.images" in message
    assert "unreadable" not in message and "on_bad_image" not in message
    with pytest.raises(data.DataError, match=r"names a file in .*elsewhere; check data.images"):
        data.load(config(tmp_path, table, images=str(tmp_path / "elsewhere")))
    assert len(data.load(config(tmp_path, table, images=str(tmp_path / "set" / "pictures"))).labels) == 6


def test_every_file_unreadable_is_said_so_not_skip_them(tmp_path):
    for name in ("a/1.png", "a/2.png", "b/3.png"):
        (tmp_path / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "set" / name).write_bytes(b"not a png")
    with pytest.raises(data.DataError, match=r"none of its 3 image files could be read; the first: .*1.png") as refused:
        data.load(config(tmp_path, tmp_path / "set"))
    assert "on_bad_image" not in str(refused.value)


def split(tmp_path, root, **settings):
    cfg = config(tmp_path, root, **settings)
    return data.make_split(data.load(cfg), cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.folds)


def test_one_class_folder_is_refused(tmp_path):
    root = class_folders(tmp_path / "set", {"cat": 20})
    with pytest.raises(data.DataError, match=r"one class only \(cat\); a classifier needs two or more"):
        split(tmp_path, root)


def test_a_class_with_one_image_is_refused_before_scikit_learn(tmp_path):
    root = class_folders(tmp_path / "set", {"cat": 20, "dog": 20, "eel": 1})
    with pytest.raises(data.DataError, match=r"too few rows for a stratified split into training \+ validation \+ "
                                             r"test, which needs 3 of each class: eel 1; add images"):
        split(tmp_path, root)
    with pytest.raises(data.DataError, match=r"into 5 folds \+ test, which needs 6 of each class: eel 1"):
        split(tmp_path, root, folds=5)


def test_a_class_whose_files_were_all_skipped_as_unreadable_is_refused(tmp_path):
    root = class_folders(tmp_path / "set", {"cat": 20, "dog": 20})
    for number in range(3):
        (root / "eel" / f"{number}.png").parent.mkdir(exist_ok=True)
        (root / "eel" / f"{number}.png").write_bytes(b"")
    with pytest.raises(data.DataError, match=r"after leaving out 3 unreadable files.*eel 0"):
        split(tmp_path, root, on_bad_image="skip")


def test_parts_too_small_for_every_class_are_refused(tmp_path):
    labels = np.repeat(np.arange(10), 3)
    classes = tuple(map(str, range(10)))
    with pytest.raises(data.DataError, match=r"data.test_fraction: 0.15 gives 5 rows, fewer than the 10 classes"):
        data.check_split(labels, classes, 0.15, 0.15)
    labels = np.repeat(np.arange(10), 20)
    data.check_split(labels, classes, 0.15, 0.15)  # 30 test rows, 30 validation rows
    with pytest.raises(data.DataError, match=r"data.val_fraction: 0.02 gives 4 rows"):
        data.check_split(labels, classes, 0.02, 0.15)


def test_a_rare_label_or_one_outside_a_given_test_set_is_refused(tmp_path):
    labels = np.zeros((30, 2), np.uint8)
    labels[:, 0] = 1
    labels[:2, 1] = 1
    with pytest.raises(data.DataError, match=r"needs 3 of each label: b 2"):
        data.check_split(labels, ("a", "b"), 0.15, 0.15)
    labels = np.repeat(np.arange(2), 10)
    with pytest.raises(data.DataError, match=r"outside the given test set for a stratified split into training \+ "
                                             r"validation, which needs 2 of each class: 1 1"):
        data.check_split(labels, ("0", "1"), 0.15, 0.15, test_rows=np.arange(11, 20))
