"""The registered model: one or more trained trial models, behind an MLflow pyfunc, that take images.

A promoted trial is an ensemble of one member. `predict` takes uint8 images (N, H, W, C) or (N, H, W),
or image file paths, and returns float32 probabilities (N, classes): the members' softmax (sigmoid,
multi-label) outputs combined as the ensemble's method says. Decisions (argmax, or thresholds for
multi-label) are left to the caller; the thresholds travel in the model's metadata.

This module needs torch, numpy, Pillow, scikit-learn and visionsweep (models, data decoding, voting),
not Ray: it is what a served model imports.
"""

import json
from pathlib import Path

import numpy as np
import torch

from visionsweep.ensemble.voting import centre_on_thresholds, hard_vote, soft_vote
from visionsweep.record import TRIAL_MODEL_FOLDER

SPEC_FILE = "classifier.json"  # method, members with weights and folders, thresholds, classes, preprocessing
PREDICT_BATCH = 256  # images per forward pass


class Member:
    """One trained model (`models.load_trained`: built, weights loaded, with its normalisation) in the ensemble."""

    def __init__(self, folder: Path, centre: list[float] | None = None):
        # Imported here: the models (timm among them) take 2 s to import, which `import visionsweep.registry` skips.
        from visionsweep import models

        self.centre = centre  # multi-label ensemble member: its own thresholds, moved to 0.5 before voting
        self.trained = models.load_trained(folder)
        self.model = self.trained.model
        self.multilabel = self.trained.spec.shape["multilabel"]

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, C) -> the model's input (N, C, H, W), normalised as in training."""
        return self.trained.inputs(images)

    @torch.no_grad()
    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> float32 (N, classes), normalised as in training."""
        logits = self.model(self.inputs(images))
        probs = (torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)).numpy()
        if self.centre is not None:
            probs = centre_on_thresholds(probs[None], [{"thresholds": np.asarray(self.centre)}])[0]
        return probs


def load_trial_model(client, run_id: str) -> Member:
    """A trial run's logged model (`trained_model/`: its best validation epoch's weights, loaded with
    weights_only=True) with its normalisation: `.model`, `.inputs(images)`, `.probabilities(images)`."""
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as folder:
        try:
            downloaded = client.download_artifacts(run_id, TRIAL_MODEL_FOLDER, folder)
        except (MlflowException, OSError):
            raise LookupError(f"run {run_id} has no logged model ({TRIAL_MODEL_FOLDER}/): is it a trial that "
                              "stored predictions?") from None
        return Member(Path(downloaded))


class ImageClassifier:
    """The members and their combination, read from the folder a promotion bundled (see `_model_code`)."""

    def __init__(self, folder: Path):
        self.spec = json.loads((folder / SPEC_FILE).read_text())
        self.members = [Member(folder / m["folder"], m.get("centre")) for m in self.spec["members"]]
        self.weights = np.array([m["weight"] for m in self.spec["members"]])

    def predict(self, model_input) -> np.ndarray:
        images = self.images(model_input)
        out = []
        for start in range(0, len(images), PREDICT_BATCH):
            batch = images[start : start + PREDICT_BATCH]
            probs = np.stack([member.probabilities(batch) for member in self.members])
            if self.spec["method"] == "hard":
                out.append(hard_vote(probs, self.spec["multilabel"]))
            else:
                out.append(soft_vote(probs, self.weights))
        return np.concatenate(out) if out else np.zeros((0, len(self.spec["classes"])), np.float32)

    def images(self, model_input) -> np.ndarray:
        """uint8 (N, H, W, C) from arrays or file paths (a list, or a one-column DataFrame of them)."""
        size, channels = self.spec["image_size"], self.spec["channels"]
        if hasattr(model_input, "to_numpy"):  # a pandas DataFrame or Series of paths
            model_input = model_input.to_numpy().ravel().tolist()
        if isinstance(model_input, (list, tuple)) and all(isinstance(p, (str, Path)) for p in model_input):
            from visionsweep.data import decode_image

            return np.stack([decode_image(p, size, channels) for p in model_input]) if model_input else \
                np.zeros((0, size, size, channels), np.uint8)
        images = np.asarray(model_input)
        if images.ndim == 3:
            images = images[..., None]
        if images.dtype != np.uint8 or images.shape[1:] != (size, size, channels):
            raise ValueError(
                f"expected uint8 images of shape (N, {size}, {size}, {channels}) or file paths, "
                f"got {images.dtype} {images.shape}"
            )
        return images
