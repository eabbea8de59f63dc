"""The functions Ray Tune runs, one call per trial."""

from visionsweep.trainables.classifier import PREDICTIONS_FILE, STATE_FILE, train_classifier

__all__ = ["PREDICTIONS_FILE", "STATE_FILE", "train_classifier"]
