"""How a trial ended, decided in one place for the Optuna study, MLflow and the summary."""

from enum import Enum


class Outcome(str, Enum):
    COMPLETE = "complete"  # trained for every epoch it was given, or ended by its own early stopping
    PRUNED = "pruned"  # stopped early by the scheduler (ASHA) or by the sweep's time budget
    FAILED = "failed"  # raised


def trial_outcome(last_epoch: int | None, max_epochs: int, errored: bool, early_stopped: bool = False) -> Outcome:
    """A trial that ended without error before `max_epochs` was stopped by the scheduler, unless its own
    early stopping (train.early_stopping_patience) ended it: that trial finished its training."""
    if errored:
        return Outcome.FAILED
    if last_epoch is not None and last_epoch < max_epochs and not early_stopped:
        return Outcome.PRUNED
    return Outcome.COMPLETE
