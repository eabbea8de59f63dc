from pathlib import Path
from typing import Callable

import numpy as np

from visionsweep.data._dataset import DataError, Dataset, Listing
from visionsweep.data._files import list_dataset, load_files
from visionsweep.task import is_multilabel

_LOADERS: dict[str, Callable[..., Dataset]] = {}


def register(name: str):
    def decorator(loader: Callable[..., Dataset]):
        if name in _LOADERS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _LOADERS[name] = loader
        return loader

    return decorator


def names() -> list[str]:
    return sorted(_LOADERS)


def load(config) -> Dataset:
    """Decodes the dataset a `DataConfig` names (a registered name or a path), with its given test set if any."""
    dataset = _load_one(config, config.dataset)
    if config.test_dataset:
        dataset = with_test_set(dataset, _load_one(config, config.test_dataset))
    return dataset


def listing(config) -> Listing:
    """What `load(config)` would give, without decoding an image file: files, labels, classes, test rows.

    A registered dataset has no files: it is loaded (the built-ins take a second at most).
    """
    train = _list_one(config, config.dataset)
    if not config.test_dataset:
        return train
    test = _list_one(config, config.test_dataset)
    labels = _labels_in(train.classes, train.multilabel, test.labels, test.classes)
    return Listing(
        files=train.files + test.files,
        labels=np.concatenate([train.labels, labels]),
        classes=train.classes,
        test_rows=np.arange(len(train.labels), len(train.labels) + len(labels)),
        layout=train.layout,
    )


def _list_one(config, name: str) -> Listing:
    if name in _LOADERS:
        dataset = _LOADERS[name](config)
        return Listing([], dataset.labels, dataset.classes, dataset.test_rows, layout="registered")
    return list_dataset(config, _existing(name))


def _load_one(config, name: str) -> Dataset:
    if name in _LOADERS:
        return conform(_LOADERS[name](config), config)
    return load_files(config, _existing(name))


def _existing(name: str) -> Path:
    if not Path(name).exists():
        raise DataError(f"dataset {name!r} is neither registered ({', '.join(names())}) nor an existing path")
    return Path(name)


def conform(dataset: Dataset, config) -> Dataset:
    """A built-in dataset resized to `data.image_size` and given `data.channels`, when those are set."""
    images = dataset.images
    if config.image_size and config.image_size != dataset.image_size:
        import torch
        from torch.nn.functional import interpolate

        resized = interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float(), size=config.image_size,
                              mode="bilinear", antialias=True, align_corners=False)
        images = resized.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    if config.channels == "rgb" and images.shape[3] == 1:
        images = np.repeat(images, 3, axis=3)
    elif config.channels == "gray" and images.shape[3] == 3:
        from visionsweep.data._files import to_gray

        images = to_gray(images)
    if images is dataset.images:
        return dataset
    return Dataset(images=np.ascontiguousarray(images), labels=dataset.labels, classes=dataset.classes,
                   test_rows=dataset.test_rows, bad_files=dataset.bad_files, summary=dataset.summary)


def _labels_in(classes: tuple[str, ...], multilabel: bool, labels: np.ndarray, their_classes: tuple[str, ...]):
    """A given test set's labels in the training data's class order; its classes must be among `classes`."""
    unknown = sorted(set(their_classes) - set(classes))
    if unknown:
        raise DataError(f"data.test_dataset has classes the training data lacks: {', '.join(unknown)}")
    if multilabel != is_multilabel(labels):
        raise DataError("data.test_dataset must be multi-label exactly when data.dataset is")
    column = np.array([classes.index(c) for c in their_classes], np.int64)
    if not multilabel:
        return column[labels] if len(column) else labels
    placed = np.zeros((len(labels), len(classes)), np.uint8)
    placed[:, column] = labels
    return placed


def with_test_set(train: Dataset, test: Dataset) -> Dataset:
    """`train` followed by the rows of a given test set, whose classes must be among the training classes."""
    labels = _labels_in(train.classes, train.multilabel, test.labels, test.classes)
    train_images, test_images = train.images, test.images
    if train.channels != test.channels:  # one side all gray under channels: auto: give it three channels
        train_images, test_images = (x if x.shape[3] == 3 else np.repeat(x, 3, axis=3) for x in (train_images, test_images))
    return Dataset(
        images=np.concatenate([train_images, test_images]),
        labels=np.concatenate([train.labels, labels]),
        classes=train.classes,
        test_rows=np.arange(len(train.labels), len(train.labels) + len(test.labels)),
        bad_files=train.bad_files + test.bad_files,
        summary={**train.summary, **{f"test_{k}": v for k, v in test.summary.items()}},
    )
