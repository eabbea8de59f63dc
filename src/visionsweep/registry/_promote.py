"""Promotion: a trial's model, or a whole ensemble, registered in the MLflow Model Registry behind an alias.

An alias that already points to a version is a gate: a candidate whose test score is lower than the
holder's is refused (both numbers in the message) unless forced. The score and its measure are
tags on every version this module registers.
"""

import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

import visionsweep
from visionsweep import metrics
from visionsweep.record import (
    ENSEMBLE_ARTIFACT, KIND_ENSEMBLE, KIND_TRIAL, MODEL_ARTIFACT, MODEL_SPEC_FILE, PREDICTIONS_ARTIFACT, TAG_KIND,
    TAG_MEASURE, TAG_SOURCE, TAG_TEST_SCORE, TEST_PREFIX, TRIAL_MODEL_FOLDER,
)
from visionsweep.registry._pyfunc import SPEC_FILE

# The tracking and ensemble modules import Ray: they are imported inside the functions that need them,
# so that a served model, which imports this package, does not.
# Written out so that logging skips MLflow's inference (about 9 s a model, docs/stack.md); a served model
# imports torch, torchvision and timm (the models), numpy, Pillow, scikit-learn and the bundled visionsweep code
# and user model code (plus what MLflow itself needs).
REQUIREMENTS = ("torch", "torchvision", "timm", "numpy", "pillow", "scikit-learn", "mlflow")


class GateRefused(Exception):
    """A candidate scored lower on the test rows than the version the alias points to."""


@dataclass
class Candidate:
    source_run_id: str  # the trial or ensemble run the model is logged to
    kind: str  # trial | ensemble
    members: list[dict]  # {"run_id", "weight", "centre": multi-label thresholds the member is centred on, or None}
    method: str  # average | hard
    thresholds: list[float] | None  # multi-label decisions
    measure: str
    test_score: float


def trial_candidate(client, run_id: str) -> Candidate:
    run = _get_run(client, run_id)
    if run.data.tags.get(TAG_KIND) != KIND_TRIAL:
        raise LookupError(f"run {run_id} is not a visionsweep trial (for an ensemble run use --ensemble)")
    measure = "accuracy" if f"{TEST_PREFIX}accuracy" in run.data.metrics else "micro_f1"
    if f"{TEST_PREFIX}{measure}" not in run.data.metrics:
        raise LookupError(f"trial run {run_id} has no test score: it ended without stored predictions")
    _download_text(client, run_id, f"{TRIAL_MODEL_FOLDER}/{MODEL_SPEC_FILE}")  # fails early without a model
    thresholds = None
    if measure == "micro_f1":  # the thresholds the trial tuned on validation (0.5 when fixed)
        from visionsweep.tracking import load_artifact_npz

        stored = load_artifact_npz(client, run_id, PREDICTIONS_ARTIFACT)
        thresholds = metrics.decision_thresholds(stored, len(stored["classes"])).tolist()
    return Candidate(run_id, "trial", [{"run_id": run_id, "weight": 1.0, "centre": None}], "average", thresholds, measure,
                     run.data.metrics[f"{TEST_PREFIX}{measure}"])


def ensemble_candidate(client, run_id: str) -> Candidate:
    run = _get_run(client, run_id)
    if run.data.tags.get(TAG_KIND) != KIND_ENSEMBLE:
        raise LookupError(f"run {run_id} is not a visionsweep ensemble run (for a trial use --run)")
    spec = json.loads(_download_text(client, run_id, ENSEMBLE_ARTIFACT))
    return Candidate(run_id, "ensemble", spec["members"], spec["method"], spec["thresholds"], spec["measure"],
                     spec["test_score"])


def check_gate(client, name: str, alias: str, candidate: Candidate, force: bool) -> None:
    """Raises GateRefused when `name@alias` holds a version that scored higher on the test rows."""
    try:
        holder = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return  # no such model or alias yet: nothing to beat
    held_measure = holder.tags.get(TAG_MEASURE)
    held = float(holder.tags.get(TAG_TEST_SCORE, "nan"))
    if force:
        return
    if held_measure != candidate.measure:
        raise GateRefused(
            f"{name}@{alias} (version {holder.version}) is scored by test {held_measure}, the candidate by "
            f"test {candidate.measure}: not comparable; use --force to promote anyway"
        )
    if candidate.test_score < held:
        raise GateRefused(
            f"refused: candidate test {candidate.measure} {candidate.test_score:.4f} is lower than "
            f"{held:.4f} of {name}@{alias} (version {holder.version}); use --force to promote anyway"
        )


def promote(client, candidate: Candidate, name: str, alias: str = "champion", force: bool = False):
    """Logs the candidate as a pyfunc model to its source run, registers it and points `alias` at it."""
    check_gate(client, name, alias, candidate, force)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        bundle = folder / "ensemble"
        spec = _bundle(client, candidate, bundle)
        mlflow.pyfunc.save_model(
            path=folder / "model",
            python_model=str(Path(__file__).with_name("_model_code.py")),
            artifacts={"ensemble": str(bundle)},
            # MLflow puts these on sys.path wherever the model loads: visionsweep and the members' own model code
            code_paths=[str(Path(visionsweep.__file__).parent), *_member_code(bundle, spec)],
            pip_requirements=[f"{package}=={installed_version(package)}" for package in REQUIREMENTS],
            signature=signature(spec),
            metadata={key: spec[key] for key in ("classes", "multilabel", "thresholds", "method", "image_size",
                                                 "channels", "measure", "test_score")},
        )
        client.log_artifacts(candidate.source_run_id, str(folder / "model"), MODEL_ARTIFACT)
    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = client.get_run(candidate.source_run_id).info.artifact_uri + "/" + MODEL_ARTIFACT
    version = client.create_model_version(
        name, source, run_id=candidate.source_run_id,
        tags={TAG_MEASURE: candidate.measure, TAG_TEST_SCORE: str(candidate.test_score), TAG_SOURCE: candidate.kind},
    )
    client.set_registered_model_alias(name, alias, version.version)
    return version


def _bundle(client, candidate: Candidate, folder: Path) -> dict:
    """The pyfunc's artifact folder: every member's trained model plus the ensemble spec."""
    from visionsweep.models import ModelSpec  # imported where needed, as in _pyfunc: the models take 2 s to import

    folder.mkdir()
    members, shapes = [], set()
    for index, member in enumerate(candidate.members):
        target = folder / f"member{index}"
        downloaded = client.download_artifacts(member["run_id"], TRIAL_MODEL_FOLDER, str(folder))
        shutil.move(downloaded, target)
        member_spec = ModelSpec.read(target)
        shapes.add((member_spec.shape["image_size"], member_spec.shape["in_channels"]))
        classes, multilabel = member_spec.classes, member_spec.shape["multilabel"]
        members.append({"folder": target.name, **member})
    if len(shapes) > 1:
        raise LookupError(f"members expect different image sizes/channels {sorted(shapes)}: they cannot share inputs")
    (image_size, channels), = shapes
    spec = {"method": candidate.method, "members": members, "thresholds": candidate.thresholds,
            "classes": classes, "multilabel": multilabel, "image_size": image_size, "channels": channels,
            "measure": candidate.measure, "test_score": candidate.test_score}
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=1))
    return spec


def signature(spec: dict) -> ModelSignature:
    """uint8 images (N, H, W, C) in, float32 probabilities (N, classes) out: what a served model's
    `POST /invocations` takes as {"inputs": [...]} (nested lists of pixel values) and answers."""
    size, channels = spec["image_size"], spec["channels"]
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, size, size, channels))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(spec["classes"])))]),
    )


def _member_code(bundle: Path, spec: dict) -> list[str]:
    """The user model code the members carry (a trial's copy, see models.save_trained): one copy of each module or
    package."""
    from visionsweep.models import ModelSpec

    found: dict[str, tuple[str, str]] = {}  # top-level name -> (sha256, path)
    for member in spec["members"]:
        code = ModelSpec.read(bundle / member["folder"]).code
        if not code:
            continue
        path = bundle / member["folder"] / code["path"]
        held = found.setdefault(path.name, (code["sha256"], str(path)))
        if held[0] != code["sha256"]:
            raise LookupError(f"members were trained with different versions of {path.name} (source sha256 "
                              f"{held[0][:12]} and {code['sha256'][:12]}): they cannot load side by side")
    return [path for _, path in found.values()]


def _get_run(client, run_id: str):
    try:
        return client.get_run(run_id)
    except MlflowException as err:
        raise LookupError(f"run {run_id}: {err.message}") from None


def _download_text(client, run_id: str, path: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        try:
            return Path(client.download_artifacts(run_id, path, folder)).read_text()
        except (MlflowException, OSError):
            raise LookupError(
                f"run {run_id} has no artifact {path} (trials log their model since visionsweep registry support)"
            ) from None
