"""Built-in datasets and the split: mosaics label what their tiles show, splits keep rare labels everywhere."""

import numpy as np
import pytest

from visionsweep import data
from visionsweep.config import DataConfig
from visionsweep.data import builtin


@pytest.mark.parametrize("name", data.names())
def test_every_registered_dataset_loads(name):
    if "fashion" in name and not builtin.FASHION_MNIST.exists():
        pytest.skip("dataset-fashion-mnist is not installed")
    dataset = data.load(DataConfig(dataset=name, mosaic_images=200))
    assert dataset.images.dtype == np.uint8 and len(dataset.images) == len(dataset.labels) > 0
    assert dataset.labels.max() < dataset.num_classes


def test_fashion_mnist_missing_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(builtin, "FASHION_MNIST", tmp_path)
    with pytest.raises(data.DataError, match="apt-get install -y dataset-fashion-mnist"):
        data.load(DataConfig(dataset="fashion_mnist"))


def test_mosaic_labels_match_their_tiles_and_test_mosaics_use_test_digits():
    config = DataConfig(dataset="digits_mosaic", mosaic_images=300, seed=4)
    mosaic = data.load(config)
    source = data.load(DataConfig(dataset="digits"))
    assert mosaic.images.shape == (300, 16, 16, 1) and mosaic.multilabel
    assert len(mosaic.test_rows) == round(300 * config.test_fraction)
    digit_of = {source.images[i].tobytes(): i for i in range(len(source.images))}
    used = {"train": set(), "test": set()}
    test_rows = set(mosaic.test_rows.tolist())
    for row, (image, labels) in enumerate(zip(mosaic.images, mosaic.labels)):
        shown = set()
        for y in (0, 8):
            for x in (0, 8):
                tile = image[y : y + 8, x : x + 8]
                if tile.any():
                    index = digit_of[tile.tobytes()]  # every filled tile is a real digit image
                    shown.add(int(source.labels[index]))
                    used["test" if row in test_rows else "train"].add(index)
        assert shown == set(np.flatnonzero(labels).tolist())
    assert not used["train"] & used["test"]
    assert (mosaic.labels.sum(axis=1) == 0).any()  # some mosaics carry no label
    again = data.load(config)
    assert np.array_equal(again.images, mosaic.images) and np.array_equal(again.labels, mosaic.labels)


def test_mosaic_skew_spans_label_frequencies_50x():
    labels = data.load(DataConfig(dataset="digits_mosaic", mosaic_skew=True)).labels
    counts = labels.sum(axis=0)
    assert counts.min() > 0 and counts.max() / counts.min() >= 50


def test_iterative_split_keeps_a_rare_label_in_every_part_and_repeats():
    rng = np.random.default_rng(0)
    labels = (rng.random((2000, 6)) < [0.4, 0.3, 0.2, 0.1, 0.05, 0.0]).astype(np.uint8)
    labels[rng.choice(2000, 12, replace=False), 5] = 1  # a label on 12 images only
    images = np.zeros((2000, 4, 4, 1), np.uint8)
    dataset = data.Dataset(images=images, labels=labels, classes=tuple("abcdef"))
    split = data.make_split(dataset, val_fraction=0.2, test_fraction=0.2, seed=5)
    rows = np.concatenate([split.train, split.val, split.test])
    assert len(np.unique(rows)) == len(rows) == 2000
    assert abs(len(split.test) - 400) <= 10 and abs(len(split.val) - 400) <= 10
    for part in (split.train, split.val, split.test):
        assert labels[part, 5].sum() >= 2
    again = data.make_split(dataset, val_fraction=0.2, test_fraction=0.2, seed=5)
    assert all(np.array_equal(getattr(split, p), getattr(again, p)) for p in ("train", "val", "test"))
    state = np.random.get_state()[1].copy()
    data.make_split(dataset, val_fraction=0.2, test_fraction=0.2, seed=6)
    assert np.array_equal(np.random.get_state()[1], state)  # the global generator is left as it was


def test_builtin_resized_and_given_channels():
    dataset = data.load(DataConfig(dataset="digits", image_size=16, channels="rgb"))
    assert dataset.images.shape == (1797, 16, 16, 3)


def test_search_metric_must_suit_the_data_before_anything_starts(tmp_path):
    from visionsweep.config import ConfigError, parse_config
    from visionsweep.orchestrator import run_sweep

    config = parse_config({"name": "x", "data": {"dataset": "digits_mosaic", "mosaic_images": 100}})
    with pytest.raises(ConfigError, match=r"search.metric 'val_accuracy': data.dataset digits_mosaic is multi-label; allowed: .*val_micro_f1"):
        run_sweep(config, f"sqlite:///{tmp_path}/mlflow.db")
    assert not (tmp_path / "mlflow.db").exists()


def test_data_errors_exit_2(tmp_path, capsys):
    from visionsweep.cli import main

    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "set" / "labels").mkdir()
    (tmp_path / "set" / "labels" / "sea.txt").write_text("im4.jpg\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"name: x\ndata: {{dataset: {tmp_path / 'set'}, cache_dir: {tmp_path / 'cache'}}}\nsearch: {{metric: val_micro_f1}}\n")
    assert main(["run", str(sweep), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    assert "sea.txt, line 1: 'im4.jpg' names no image" in capsys.readouterr().err


def test_multilabel_folds_keep_a_rare_label_in_every_fold():
    rng = np.random.default_rng(1)
    labels = (rng.random((1500, 4)) < [0.4, 0.2, 0.1, 0.0]).astype(np.uint8)
    labels[rng.choice(1500, 15, replace=False), 3] = 1  # a label on 15 images only
    dataset = data.Dataset(images=np.zeros((1500, 4, 4, 1), np.uint8), labels=labels, classes=tuple("abcd"))
    split = data.make_split(dataset, val_fraction=0.2, test_fraction=0.2, seed=5, folds=3)
    rare = labels[split.development, 3]
    assert np.bincount(split.folds).tolist() == [400, 400, 400]
    assert all(rare[split.folds == fold].sum() >= 2 for fold in range(3))
