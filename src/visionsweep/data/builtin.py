"""Datasets that ship with the installed packages: nothing is downloaded."""

import gzip
from pathlib import Path

import numpy as np

from visionsweep.data._dataset import DataError, Dataset
from visionsweep.data._registry import register
from visionsweep.data._split import _stratified_split

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
SKEW_SPAN = 100  # with mosaic_skew, the commonest tile class is drawn this many times as often as the rarest


@register("digits")
def digits(config) -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 8x8 gray, 10 balanced classes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are 0..16; scale to the uint8 range every other dataset uses.
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
    return Dataset(images=images, labels=bunch.target.astype(np.int64), classes=tuple(map(str, bunch.target_names)))


@register("fashion_mnist")
def fashion_mnist(config) -> Dataset:
    """Fashion-MNIST from Debian's dataset-fashion-mnist: 60,000 + 10,000 given test images, 28x28 gray, 10 classes."""
    parts = {}
    for part in ("train", "t10k"):
        images_file, labels_file = FASHION_MNIST / f"{part}-images-idx3-ubyte.gz", FASHION_MNIST / f"{part}-labels-idx1-ubyte.gz"
        if not images_file.exists() or not labels_file.exists():
            raise DataError(
                f"fashion_mnist: {images_file} not found; install it with "
                "`apt-get update && apt-get install -y dataset-fashion-mnist` (or `make data`)"
            )
        # IDX files: a 16-byte header for images, 8 bytes for labels, then one uint8 per pixel / label.
        images = np.frombuffer(gzip.decompress(images_file.read_bytes()), np.uint8, offset=16).reshape(-1, 28, 28, 1)
        labels = np.frombuffer(gzip.decompress(labels_file.read_bytes()), np.uint8, offset=8).astype(np.int64)
        parts[part] = (images, labels)
    (train_x, train_y), (test_x, test_y) = parts["train"], parts["t10k"]
    return Dataset(
        images=np.concatenate([train_x, test_x]),
        labels=np.concatenate([train_y, test_y]),
        classes=FASHION_CLASSES,
        test_rows=np.arange(len(train_x), len(train_x) + len(test_x)),
    )


@register("digits_mosaic")
def digits_mosaic(config) -> Dataset:
    """2x2 mosaics (16x16) of digits; multi-label: the set of digits shown. Test mosaics use only test digits."""
    return mosaic(digits(config), config)


@register("fashion_mosaic")
def fashion_mosaic(config) -> Dataset:
    """2x2 mosaics (56x56) of Fashion-MNIST images; multi-label. Test mosaics use only Fashion-MNIST's test images."""
    return mosaic(fashion_mnist(config), config)


def mosaic(source: Dataset, config) -> Dataset:
    """A multi-label dataset of `config.mosaic_images` 2x2 mosaics of `source`'s images, deterministic for `config.seed`.

    Each tile holds an image with probability `mosaic_fill`, else stays blank; the label is the set of
    classes shown, so a mosaic of blanks has no label. Training mosaics are built from training images
    only and test mosaics from test images only (the source's own test rows, or a stratified
    `test_fraction` of them), so no source image is seen on both sides.
    """
    rng = np.random.default_rng(config.seed)
    rows = np.arange(len(source.labels))
    if source.test_rows is not None:
        test_pool = source.test_rows
    else:
        _, test_pool = _stratified_split(rows, source.labels, config.test_fraction, config.seed)
    train_pool = np.setdiff1d(rows, test_pool)
    n_test = max(1, round(config.mosaic_images * config.test_fraction))
    num_classes = source.num_classes
    weights = SKEW_SPAN ** -np.linspace(0, 1, num_classes) if config.mosaic_skew else np.ones(num_classes)
    parts = [_tiles(source, pool, n, weights / weights.sum(), config.mosaic_fill, rng)
             for pool, n in ((train_pool, config.mosaic_images - n_test), (test_pool, n_test))]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return Dataset(images=images, labels=labels, classes=source.classes,
                   test_rows=np.arange(len(images) - n_test, len(images)))


def _tiles(source: Dataset, pool: np.ndarray, count: int, class_weights, fill: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """`count` mosaics whose tiles come from `pool` rows; returns images and multi-hot labels."""
    by_class = [pool[source.labels[pool] == c] for c in range(source.num_classes)]
    size, channels = source.image_size, source.channels
    images = np.zeros((count, 2 * size, 2 * size, channels), np.uint8)
    labels = np.zeros((count, source.num_classes), np.uint8)
    filled = rng.random((count, 4)) < fill
    tile_classes = rng.choice(source.num_classes, size=(count, 4), p=class_weights)
    for index, corner in np.argwhere(filled):
        cls = tile_classes[index, corner]
        row = rng.choice(by_class[cls])
        y, x = divmod(int(corner), 2)
        images[index, y * size : (y + 1) * size, x * size : (x + 1) * size] = source.images[row]
        labels[index, cls] = 1
    return images, labels
