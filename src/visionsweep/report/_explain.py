"""Grad-CAM for one trial's logged model over its sweep's test images: which run, which layer, which images."""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionsweep import metrics, registry, tracking
from visionsweep.report import _figures
from visionsweep.report._cam import Example, grad_cam, pick_examples, target_layer
from visionsweep.record import CAM_FOLDER, KIND_TRIAL, PREDICTIONS_ARTIFACT, TAG_KIND, TAG_PARENT


@dataclass
class Explanation:
    run_id: str
    layer: str  # the model's module the maps come from (named by the user, or found by inspection)
    examples: list[Example]
    images: np.ndarray  # uint8 (N, H, W, C), one per example
    heat: np.ndarray  # (N, H, W) in 0..1

    def figure(self, cls: int | None = None):
        """All examples, or those of one class (label)."""
        keep = [i for i, e in enumerate(self.examples) if cls is None or e.label == cls]
        return _figures.activation_maps(self.images[keep], self.heat[keep], [self.examples[i].title for i in keep],
                                        [self.examples[i].correct for i in keep])


def explain(client, run_id: str, test_images: np.ndarray, test_labels: np.ndarray, classes: list[str],
            layer: str | None = None) -> Explanation:
    """Grad-CAM of trial run `run_id` on a right and a wrong test image per class, from its stored predictions."""
    stored = tracking.load_artifact_npz(client, run_id, PREDICTIONS_ARTIFACT)
    thresholds = metrics.decision_thresholds(stored, len(classes))  # the trial's own, as its logged scores use
    examples = pick_examples(test_labels, stored["test_probs"], classes, thresholds)
    if not examples:
        raise LookupError(f"run {run_id}: no test image to explain")
    trained = registry.load_trial_model(client, run_id)
    rows = [e.row for e in examples]
    x = trained.inputs(test_images[rows])
    name, module = target_layer(trained.model, x, layer)
    heat = grad_cam(trained.model, module, x, [e.cls for e in examples])
    return Explanation(run_id, name, examples, test_images[rows], heat)


def write_explanation(explanation: Explanation, classes: list[str], folder: Path) -> list[Path]:
    """One PNG per class (label) into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for c, name in enumerate(classes):
        if any(e.label == c for e in explanation.examples):
            paths.append(folder / f"{_file_name(name)}.png")
            explanation.figure(c).savefig(paths[-1], format="png", dpi=90, bbox_inches="tight")
    return paths


def log_explanation(client, explanation: Explanation, classes: list[str]) -> list[str]:
    """The PNGs of `write_explanation` into the trial run's gradcam/ folder; returns their artifact paths."""
    with tempfile.TemporaryDirectory() as folder:
        paths = write_explanation(explanation, classes, Path(folder))
        client.log_artifacts(explanation.run_id, folder, artifact_path=CAM_FOLDER)
    return [f"{CAM_FOLDER}/{p.name}" for p in paths]


def _file_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "class"


def explain_run(client, run_id: str, layer: str | None = None, output: Path | None = None) -> tuple[Explanation, list]:
    """`visionsweep explain --run ID`: Grad-CAM of a trial run over its sweep's test images, logged to the run
    (gradcam/<class>.png) and, with `output`, written there too. Returns the explanation and the artifact paths."""
    from visionsweep.report._collect import sweep_test_data

    try:
        run = client.get_run(run_id)
    except Exception as err:  # noqa: BLE001 - MLflow raises its own exception types for an unknown id
        raise LookupError(f"run {run_id}: {getattr(err, 'message', err)}") from None
    if run.data.tags.get(TAG_KIND) != KIND_TRIAL:
        raise LookupError(f"run {run_id} is not a visionsweep trial run")
    images, labels, classes = sweep_test_data(client, run.data.tags[TAG_PARENT])
    explanation = explain(client, run_id, images, labels, classes, layer)
    if output is not None:
        write_explanation(explanation, classes, Path(output))
    return explanation, log_explanation(client, explanation, classes)
