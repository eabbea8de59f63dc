"""Datasets, decoded once into uint8 arrays, and the split every trial and the ensemble share.

A dataset is one decorated function returning a `Dataset`; `load(config.data)` finds it by name.
"""

from visionsweep.data._dataset import DataError, Dataset
from visionsweep.data._registry import load, names, register
from visionsweep.data._split import Split, make_split
from visionsweep.data._files import load_files

# Each import registers its datasets.
from visionsweep.data import builtin  # noqa: E402,F401

__all__ = ["DataError", "Dataset", "Split", "load", "load_files", "make_split", "names", "register"]
