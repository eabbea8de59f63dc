"""The Model Registry side: promote a trial or an ensemble behind a gated alias; predict images with it.

A registered model is an MLflow pyfunc (`_pyfunc.ImageClassifier`) holding every member's weights,
model config and normalisation, the class names, the image size and channels, and the thresholds.
"""

from visionsweep.registry._predict import image_files, load_model, predict_files
from visionsweep.registry._promote import (
    Candidate,
    GateRefused,
    check_gate,
    ensemble_candidate,
    promote,
    trial_candidate,
)
from visionsweep.registry._pyfunc import ImageClassifier, load_trial_model

__all__ = [
    "Candidate",
    "GateRefused",
    "ImageClassifier",
    "check_gate",
    "ensemble_candidate",
    "image_files",
    "load_model",
    "load_trial_model",
    "predict_files",
    "promote",
    "trial_candidate",
]
