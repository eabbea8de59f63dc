import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visionsweep.errors import ConfigError
from visionsweep.task import is_multilabel


class DataError(ConfigError):
    """Input data that cannot be used (a missing file, unreadable images, a label naming no image).

    A ConfigError: the command exits 2 with the message, before Ray starts.
    """


@dataclass(frozen=True)
class Dataset:
    """Decoded images and their labels.

    images: uint8 (N, H, W, C); labels: int64 (N,) class indices for multi-class, or a uint8 multi-hot
    (N, num_classes) for multi-label. `test_rows`, when the data comes with its own test set, are the
    rows that form it (the split then draws validation rows from the rest only). `bad_files` are the
    files skipped as unreadable (`on_bad_image: skip`); `summary` counts what decoding found and converted.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    test_rows: np.ndarray | None = None
    bad_files: tuple[str, ...] = ()
    summary: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    @property
    def multilabel(self) -> bool:
        return is_multilabel(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.images.shape[3]

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    def fingerprint(self) -> str:
        """sha256 of the decoded pixels and labels: the same data gives the same fingerprint."""
        digest = hashlib.sha256()
        for array in (self.images, self.labels):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).data)
        digest.update("\n".join(self.classes).encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Listing:
    """What a dataset holds, before any pixel is decoded: its files (none for a registered dataset), labels
    as in `Dataset`, and the rows of a given test set."""

    files: list[Path]
    labels: np.ndarray
    classes: tuple[str, ...]
    test_rows: np.ndarray | None = None
    layout: str = ""  # how it was read: folders, csv, label_files, or registered

    @property
    def multilabel(self) -> bool:
        return is_multilabel(self.labels)

    def counts(self) -> dict[str, int]:
        """Rows per class (multi-class) or per label (multi-label)."""
        per_class = self.labels.sum(axis=0) if self.multilabel else np.bincount(self.labels, minlength=len(self.classes))
        return dict(zip(self.classes, map(int, per_class)))
