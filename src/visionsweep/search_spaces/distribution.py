"""One searched parameter of a sweep file's `space`: its distribution, condition and repetition."""

import builtins
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class Distribution(BaseModel):
    """One searched parameter: exactly one of the four keys, e.g. `{loguniform: [1e-4, 1e-1]}`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    uniform: tuple[float, float] | None = None  # low, high
    loguniform: tuple[float, float] | None = None  # low, high; both > 0
    int: tuple[builtins.int, builtins.int] | None = None  # low, high, inclusive
    categorical: list[Any] | None = None  # the choices
    when: dict[str, Any] | None = None  # sampled only while each named parameter has this value (or one of a list)
    repeat: str | None = None  # a count parameter: the name holds {i}, one parameter each for i = 1..count

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(KINDS)} (got {given or 'none'})")
        kind = given[0]
        value = getattr(self, kind)
        if kind == "categorical":
            if not value:
                raise ValueError("categorical needs at least one choice")
        elif value[0] > value[1]:
            raise ValueError(f"{kind}: low {value[0]} is above high {value[1]}")
        elif kind == "loguniform" and value[0] <= 0:
            raise ValueError(f"loguniform: low must be > 0 (got {value[0]})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def args(self):
        return getattr(self, self.kind)

    def extremes(self) -> list:
        """The values that show whether the range fits a parameter: every choice, or low and high."""
        return list(self.categorical) if self.kind == "categorical" else list(self.args)


KINDS = ("uniform", "loguniform", "int", "categorical")
