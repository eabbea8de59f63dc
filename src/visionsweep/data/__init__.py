"""Datasets, decoded once into uint8 arrays, and the split every trial and the ensemble share.

A dataset is one decorated function returning a `Dataset`; `load(config.data)` finds it by name.
`listing(config.data)` says what a dataset holds without decoding it; `check_split` whether it can be split.
`decode_image` reads one file exactly as a dataset's files are read: a served model's input.
"""

from visionsweep.data._dataset import DataError, Dataset, Listing
from visionsweep.data._registry import listing, load, names, register
from visionsweep.data._split import Split, check_split, make_split
from visionsweep.data._files import IMAGE_SUFFIXES, decode_image, load_files, to_gray

# Each import registers its datasets.
from visionsweep.data import builtin  # noqa: E402,F401

__all__ = [
    "IMAGE_SUFFIXES",
    "DataError",
    "Dataset",
    "Listing",
    "Split",
    "check_split",
    "decode_image",
    "listing",
    "load",
    "load_files",
    "make_split",
    "names",
    "register",
    "to_gray",
]
