"""Coordinate search: one parameter at a time over its listed values, the others fixed; the best value is
carried forward to the next parameter, in the given order. A pure state machine (no Ray): the orchestrator's
searcher asks it for configs and tells it scores.

    walk = CoordinateWalk({"lr": [0.01, 0.1], "dropout": [0.0, 0.5]}, mode="max")
    config = walk.propose()   # {"lr": 0.01}; None while the current parameter still waits for scores
    walk.tell(config, 0.93)
"""

from typing import Any


class CoordinateWalk:
    def __init__(self, values: dict[str, list], order: list[str] | None = None, mode: str = "max",
                 fixed: dict[str, Any] | None = None):
        self.values = values
        self.order = list(order or values)
        self.sign = 1 if mode == "max" else -1
        self.fixed = fixed or {}  # values of the parameters not walked yet; a config equal to a tried one is not rerun
        self.chosen: dict[str, Any] = {}  # parameter -> its best value, for the parameters done
        self.scores: dict[str, float] = {}  # config key -> score, higher is better
        self.history: list[tuple[dict, float | None]] = []  # every told config and its score, in order
        self.stage = 0
        self._start_stage()

    @property
    def done(self) -> bool:
        return self.stage == len(self.order)

    def propose(self) -> dict[str, Any] | None:
        """The next config to try, or None: waiting for the current parameter's scores, or done."""
        while not self.done:
            while self.queue:
                config = self.queue.pop(0)
                if self._key(config) not in self.scores and self._key(config) not in self.waiting:
                    self.waiting.add(self._key(config))
                    return config
            if self.waiting:
                return None
            self._finish_stage()
        return None

    def tell(self, config: dict[str, Any], score: float | None) -> None:
        """A config's score (None: it failed, the worst score)."""
        key = self._key(config)
        self.waiting.discard(key)
        self.scores[key] = float("-inf") if score is None else self.sign * score
        self.history.append((config, score))

    def _config(self, value) -> dict[str, Any]:
        return {**self.chosen, self.order[self.stage]: value}

    def _key(self, config: dict[str, Any]) -> str:
        return repr(sorted({**self.fixed, **config}.items()))

    def _start_stage(self) -> None:
        self.queue = [self._config(v) for v in self.values[self.order[self.stage]]] if not self.done else []
        self.waiting: set[str] = set()

    def _finish_stage(self) -> None:
        parameter = self.order[self.stage]
        # max() keeps the first of equal scores: ties go to the value listed first.
        self.chosen[parameter] = max(self.values[parameter], key=lambda v: self.scores[self._key(self._config(v))])
        self.stage += 1
        self._start_stage()
