"""The trial contract (`Trial`, `TrialData`) and the functions Ray Tune runs, one call per trial."""

from visionsweep.trainables._trial import (
    MODEL_FILE,
    PREDICTIONS_FILE,
    STATE_FILE,
    Trial,
    TrialData,
    channel_stats,
    load_trainable,
    run_trial,
)
from visionsweep.trainables.classifier import train_classifier

__all__ = ["MODEL_FILE", "PREDICTIONS_FILE", "STATE_FILE", "Trial", "TrialData", "channel_stats", "load_trainable",
           "run_trial",
           "train_classifier"]
