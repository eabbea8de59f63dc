"""Search spaces: YAML distributions with conditionals (`when:`) and repetition (`repeat:`), named spaces to
compose (`visionsweep spaces`), the Optuna define-by-run function, and the coordinate walk."""

from visionsweep.search_spaces._named import NamedSpace, compose, get, names, register
from visionsweep.search_spaces._space import DefineByRun, check, grid, holds, sampling_order, suggest
from visionsweep.search_spaces.coordinate import CoordinateWalk
from visionsweep.search_spaces.distribution import KINDS, Distribution

__all__ = [
    "KINDS",
    "CoordinateWalk",
    "DefineByRun",
    "Distribution",
    "NamedSpace",
    "check",
    "compose",
    "get",
    "grid",
    "holds",
    "names",
    "register",
    "sampling_order",
    "suggest",
]
