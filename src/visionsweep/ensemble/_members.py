"""Ensemble members and their stored predictions: a sweep's trials, or registered models."""

import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException

from visionsweep import tracking
from visionsweep.ensemble.voting import centre_on_thresholds
from visionsweep.record import (
    KIND_TRIAL, MODEL_URI, PREDICTIONS_ARTIFACT, SPLIT_ARTIFACT, TAG_KIND, TAG_METRIC, TAG_MODE, TAG_MODEL, TAG_PARENT,
    TAG_PREDICTIONS, best_metric,
)
from visionsweep.task import Task

DOWNLOAD_THREADS = 8  # artifact downloads are I/O bound


@dataclass
class Members:
    """Candidate members ranked best first by their validation metric, with their stored predictions."""

    run_ids: list[str]
    names: list[str]  # for people: the trial run's name, or the model URI it came from
    val_probs: np.ndarray  # float32 (members, val rows, classes): with folds, every development row out of fold
    test_probs: np.ndarray  # float32 (members, test rows, classes)
    val_labels: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    member_thresholds: list  # multi-label: each member's own thresholds (its probabilities are centred on them)
    sweep_run_id: str  # the sweep the ensemble run is logged under
    load_seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # candidates left out: non-finite predictions
    families: list[str] = field(default_factory=list)  # each member's model (record.TAG_MODEL); empty: unknown

    @property
    def task(self) -> Task:
        return Task.of(self.test_labels, self.classes)

    @property
    def multilabel(self) -> bool:
        return self.task.multilabel


def sweep_members(client, sweep_run_id: str) -> tuple[list, list[str]]:
    """The sweep's trial runs that stored predictions, ranked best first by the sweep's metric."""
    sweep = client.get_run(sweep_run_id)
    metric, mode = sweep.data.tags[TAG_METRIC], sweep.data.tags[TAG_MODE]
    ranked = [
        run
        for run in tracking.trial_runs(
            # Ties go to the earlier trial, as in the sweep's summary.
            client, sweep_run_id,
            order_by=[f"metrics.{best_metric(metric)} {'DESC' if mode == 'max' else 'ASC'}", "attributes.start_time ASC"],
        )
        if math.isfinite(run.data.metrics.get(best_metric(metric), math.nan))
        and run.data.tags.get(TAG_PREDICTIONS) != "none"
    ]
    if not ranked:
        raise LookupError(f"sweep {sweep_run_id} has no trial with stored predictions")
    return ranked, [run.info.run_name for run in ranked]


def without_predictions(client, sweep_run_id: str) -> list[str]:
    """The names of the sweep's trial runs that ended without stored predictions (a training function that
    passed none to `trial.report`): the ensemble leaves them out, and says so."""
    return sorted(run.info.run_name for run in tracking.trial_runs(client, sweep_run_id)
                  if run.data.tags.get(TAG_PREDICTIONS) == "none")


def registered_members(client, uris: list[str]) -> tuple[list, list[str]]:
    """Trial runs behind `models:/NAME@ALIAS`, `models:/NAME/VERSION` or `models:/NAME` (every version),
    ranked best first by their sweep's metric."""
    found = {}
    for uri in uris:
        for version in _versions(client, uri):
            run = client.get_run(version.run_id)
            if run.data.tags.get(TAG_KIND) != KIND_TRIAL:
                raise LookupError(
                    f"{uri}: version {version.version} comes from a {run.data.tags.get(TAG_KIND, 'non-visionsweep')} "
                    "run; ensemble members must be promoted trials"
                )
            found.setdefault(run.info.run_id, (run, f"models:/{version.name}/{version.version}"))
    runs = list(found.values())
    runs.sort(key=lambda pair: _rank_key(client, pair[0]))
    return [run for run, _ in runs], [name for _, name in runs]


def load_members(client, runs: list, names: list[str]) -> Members:
    """Downloads the members' predictions (in parallel) and the split they share."""
    started = time.perf_counter()
    with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        stored = list(pool.map(lambda run: _load_predictions(client, run), runs))
    # A NaN probability would outvote every other member's (and a diverged model predicts nothing).
    finite = [all(np.isfinite(array).all() for key, array in p.items() if key.endswith("_probs")) for p in stored]
    skipped = [name for name, ok in zip(names, finite) if not ok]
    runs, names, stored = ([x for x, ok in zip(seq, finite) if ok] for seq in (runs, names, stored))
    if not runs:
        raise LookupError(f"no member has finite predictions ({len(skipped)} skipped)")
    with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        sweeps = [run.data.tags[TAG_PARENT] for run in runs]
        splits = dict(zip(set(sweeps), pool.map(
            lambda sweep: tracking.load_artifact_npz(client, sweep, SPLIT_ARTIFACT), set(sweeps))))
    first = splits[sweeps[0]]
    for sweep, split in splits.items():
        if not all(np.array_equal(split[part], first[part]) for part in ("val", "test")):
            raise LookupError(
                f"members come from sweeps with different validation/test rows ({sweeps[0]} and {sweep}): "
                "an ensemble needs members scored on the same rows"
            )
    # Members cross-validated on the same folds (data.folds) are fitted on the out-of-fold predictions of
    # every development row, not on the validation rows alone: more rows to choose and weigh members on.
    out_of_fold = all("oof_probs" in p for p in stored) and all(
        "folds" in split and np.array_equal(split["folds"], first["folds"]) for split in splits.values())
    fit_part, fit_labels = ("oof_probs", first["development_labels"]) if out_of_fold else ("val_probs", first["val_labels"])
    classes = first["classes"].tolist()
    for run, predictions in zip(runs, stored):
        if predictions["classes"].tolist() != classes:
            raise LookupError(f"run {run.info.run_id} predicts classes {predictions['classes'].tolist()}, not {classes}")
    val_probs, test_probs = np.stack([p[fit_part] for p in stored]), np.stack([p["test_probs"] for p in stored])
    if Task.of(first["test_labels"], classes).multilabel:  # each member votes with its own thresholds
        val_probs, test_probs = centre_on_thresholds(val_probs, stored), centre_on_thresholds(test_probs, stored)
    return Members(
        run_ids=[run.info.run_id for run in runs],
        names=names,
        val_probs=val_probs,
        test_probs=test_probs,
        val_labels=fit_labels,
        test_labels=first["test_labels"],
        classes=classes,
        member_thresholds=[p["thresholds"].tolist() if "thresholds" in p else None for p in stored],
        sweep_run_id=sweeps[0],
        load_seconds=time.perf_counter() - started,
        skipped=skipped,
        families=[run.data.tags.get(TAG_MODEL, "") for run in runs],
    )


def _load_predictions(client, run) -> dict[str, np.ndarray]:
    """A run's predictions.npz, fetched straight from its artifact store.

    By the artifact's full URI rather than `client.download_artifacts(run_id, ...)`, which looks the run up
    again first: the run is known here.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = download_artifacts(artifact_uri=f"{run.info.artifact_uri}/{PREDICTIONS_ARTIFACT}",
                                    dst_path=folder, tracking_uri=client.tracking_uri)
        with np.load(path, allow_pickle=False) as arrays:
            return dict(arrays)


def _versions(client, uri: str) -> list:
    match = MODEL_URI.fullmatch(uri.strip())
    if not match:
        raise ValueError(f"--members {uri!r}: expected models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME")
    name = match["name"]
    try:
        if match["alias"]:
            return [client.get_model_version_by_alias(name, match["alias"])]
        if match["version"]:
            return [client.get_model_version(name, match["version"])]
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as err:
        raise LookupError(f"{uri}: {err.message}") from None
    if not versions:
        raise LookupError(f"{uri}: registered model {name!r} has no versions")
    return sorted(versions, key=lambda v: int(v.version))


def _rank_key(client, run) -> float:
    sweep = client.get_run(run.data.tags[TAG_PARENT])
    metric, mode = sweep.data.tags[TAG_METRIC], sweep.data.tags[TAG_MODE]
    value = run.data.metrics.get(best_metric(metric), float("nan"))
    return -value if mode == "max" else value
