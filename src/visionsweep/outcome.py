"""How a trial ended, decided in one place for the Optuna study, MLflow, the terminal and the exit status."""

import math
import re
from enum import Enum
from pathlib import Path

# The key of the result a trial reports instead of raising: its error (the whole traceback). An exception that
# leaves the trainable would make Ray retry the trial (resources.max_failures), and a retry cannot cure an
# error in the model or its data; only a dead process or node reaches Ray as a failure, and is retried.
FAILURE = "failure"


class Outcome(str, Enum):
    COMPLETE = "complete"  # trained for every epoch it was given, or ended by its own early stopping
    PRUNED = "pruned"  # stopped early by the scheduler (ASHA) or by the sweep's time budget
    FAILED = "failed"  # raised, diverged (a non-finite loss), or its process died more often than retried
    KILLED = "killed"  # cut short by the user (Ctrl-C, SIGTERM) or a dying driver: may be resumed


class Diverged(ArithmeticError):
    """A loss that is no longer finite: training can only produce NaN from here on."""

    def __init__(self, epoch: int, name: str, value: float):
        super().__init__(f"{name} is {value} at epoch {epoch}")
        self.epoch, self.name, self.value = epoch, name, value


def check_finite(epoch: int, **losses: float) -> None:
    """Raises Diverged for the first loss given that is NaN or infinite."""
    for name, value in losses.items():
        if value is not None and not math.isfinite(value):
            raise Diverged(epoch, name, value)


def failure_of(result: dict | None) -> str | None:
    """The error a trial reported as its last result (see FAILURE), or None."""
    return (result or {}).get(FAILURE)


def trial_error(trial, errored: bool) -> str | None:
    """What a Ray Tune trial that has just ended failed with, or None: the error it reported as its last result
    (FAILURE), or, when Ray ended it as errored (its process died more often than retried), the one Ray kept."""
    error = failure_of(trial.last_result)
    if error is None and errored:
        kept = Path(trial.error_file) if trial.error_file else None
        error = kept.read_text() if kept and kept.exists() else "failed without an error message (its worker died)"
    return error


def failure_reason(error: str) -> str:
    """One line for people: the exception's last line of a traceback ("Diverged: train_loss is nan at epoch 3")."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return "failed without an error message"
    return re.sub(r"^(?:\w+\.)+(?=\w+: )", "", lines[-1])  # the exception's class without its module


def trial_outcome(last_epoch: int | None, max_epochs: int, errored: bool, early_stopped: bool = False) -> Outcome:
    """A trial that ended without error before `max_epochs` was stopped by the scheduler, unless its own
    early stopping (train.early_stopping_patience) ended it: that trial finished its training."""
    if errored:
        return Outcome.FAILED
    if last_epoch is not None and last_epoch < max_epochs and not early_stopped:
        return Outcome.PRUNED
    return Outcome.COMPLETE
