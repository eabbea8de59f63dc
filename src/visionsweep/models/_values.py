"""A model parameter's value checked against the type its builder declares, before anything is built.

Builders declare their parameters with plain and pydantic types, e.g. `kernel_size: PositiveInt = 3` or
`pool: Literal["max", "avg", "none"] = "max"`; a value must fit the type as it is (strict: `"3"` is not an
int). A parameter without an annotation, or with one pydantic cannot check, takes any value.
"""

import functools
import typing
from typing import Any, Callable

import numpy as np
from pydantic import TypeAdapter, ValidationError
from pydantic.errors import PydanticSchemaGenerationError


def value_problem(builder: Callable, parameter: str, value: Any) -> str | None:
    """Why `value` does not fit `builder`'s declared type for `parameter`, or None when it does."""
    adapter = _adapters(builder).get(parameter)
    if adapter is None:
        return None
    if isinstance(value, np.generic):  # a NumPy scalar holds a plain value
        value = value.item()
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError as err:
        return "; ".join(dict.fromkeys(e["msg"] for e in err.errors()))
    return None


@functools.cache
def _adapters(builder: Callable) -> dict[str, TypeAdapter]:
    try:
        hints = typing.get_type_hints(builder, include_extras=True)
    except Exception:  # noqa: BLE001 - annotations naming what cannot be imported here: left unchecked
        return {}
    adapters = {}
    for name, hint in hints.items():
        try:
            adapters[name] = TypeAdapter(hint)
        except PydanticSchemaGenerationError:  # e.g. an nn.Module: left unchecked
            pass
    return adapters
