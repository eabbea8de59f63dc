"""Everything the report shows, read back from MLflow (and the dataset, for the test images)."""

import json
import math
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import yaml

from visionsweep import data, metrics, tracking
from visionsweep.config import SchedulerConfig, SweepConfig, parse_config
from visionsweep.record import (
    CONFIG_ARTIFACT, ENSEMBLE_TABLE_ARTIFACT, KIND_ENSEMBLE, KIND_SWEEP, PREDICTIONS_ARTIFACT, SPLIT_ARTIFACT,
    TAG_DATA_FINGERPRINT, TAG_KIND, TAG_METRIC, TAG_MODE, TAG_OUTCOME, TAG_PARENT, TAG_TRIAL_ID, best_metric,
)
from visionsweep.task import Task

READ_THREADS = 8  # metric histories are one request per trial: I/O bound


@dataclass
class Trial:
    name: str  # Ray's trial id
    run_id: str
    outcome: str  # complete | pruned | failed | killed
    params: dict[str, str]  # as MLflow stores them
    curve: list[tuple[int, float]]  # (epoch, search metric)
    best: float | None  # the search metric at its best epoch; None without predictions


@dataclass
class SweepFacts:
    run_id: str
    experiment: str
    config: SweepConfig
    metric: str
    mode: str
    summary: dict[str, float]  # the parent run's final metrics (trial counts, best scores, seconds)
    trials: list[Trial]  # best first; trials without a score last
    study: optuna.Study | None
    ensemble: dict | None  # the latest ensemble run's ensemble_table.json
    classes: list[str]
    test_labels: np.ndarray  # (N,) or multi-hot (N, C)
    best_test_probs: np.ndarray | None  # the best trial's test predictions
    test_images: np.ndarray | None  # uint8 (N, H, W, C), rows aligned with test_labels
    best_thresholds: np.ndarray | None = None  # multi-label: the thresholds the best trial decides with (its own)
    notes: list[str] = field(default_factory=list)  # what could not be shown, and why
    explanation: object | None = None  # _explain.Explanation: Grad-CAM of the explained trial
    explained_why: str = ""  # which trial was explained, and why that one

    @property
    def multilabel(self) -> bool:
        return Task.of(self.test_labels, self.classes).multilabel

    @property
    def best_trial(self) -> Trial | None:
        return self.trials[0] if self.trials and self.trials[0].best is not None else None


def asha_rungs(scheduler: SchedulerConfig) -> list[float]:
    """The epochs at which ASHA decides (Ray's `_Bracket` milestones, bracket 0); none for FIFO."""
    if scheduler.kind != "asha":
        return []
    grace, factor = scheduler.grace_period, scheduler.reduction_factor
    count = int(math.log(scheduler.max_epochs / grace) / math.log(factor) + 1)
    return [grace * factor**k for k in range(count)]


def collect(client, sweep_run_id: str, cam_run: str | None = None, cam_layer: str | None = None) -> SweepFacts:
    """Everything the page shows. `cam_run`: the trial whose model Grad-CAM explains (default: the final
    ensemble's best member, or the best trial); `cam_layer`: its layer (default: found by inspection)."""
    sweep = client.get_run(sweep_run_id)
    if sweep.data.tags.get(TAG_KIND) != KIND_SWEEP:
        raise LookupError(f"MLflow run {sweep_run_id} is not a visionsweep sweep run (no {TAG_KIND}={KIND_SWEEP} tag)")
    config = parse_config(yaml.safe_load(_read_text(client, sweep_run_id, CONFIG_ARTIFACT)), source=CONFIG_ARTIFACT)
    metric, mode = sweep.data.tags[TAG_METRIC], sweep.data.tags[TAG_MODE]
    runs = tracking.trial_runs(client, sweep_run_id)

    def trial(run) -> Trial:
        history = client.get_metric_history(run.info.run_id, metric)
        return Trial(
            name=run.data.tags.get(TAG_TRIAL_ID, run.info.run_name),
            run_id=run.info.run_id,
            outcome=run.data.tags.get(TAG_OUTCOME, "running"),
            params=dict(run.data.params),
            curve=sorted((m.step, m.value) for m in history),
            best=run.data.metrics.get(best_metric(metric)),
        )

    with ThreadPoolExecutor(READ_THREADS) as pool:
        trials = list(pool.map(trial, runs))
    sign = -1 if mode == "max" else 1
    trials.sort(key=lambda t: (t.best is None, sign * (t.best or 0.0)))

    split = tracking.load_artifact_npz(client, sweep_run_id, SPLIT_ARTIFACT)
    facts = SweepFacts(
        run_id=sweep_run_id,
        experiment=client.get_experiment(sweep.info.experiment_id).name,
        config=config,
        metric=metric,
        mode=mode,
        summary=dict(sweep.data.metrics),
        trials=trials,
        study=tracking.load_study(client, sweep_run_id),
        ensemble=_latest_ensemble(client, sweep),
        classes=[str(c) for c in split["classes"]],
        test_labels=split["test_labels"],
        best_test_probs=None,
        test_images=None,
    )
    if facts.study is None:
        facts.notes.append("The sweep run has no study.journal (a sweep from an older visionsweep): no Optuna plots.")
    if facts.best_trial:
        stored = tracking.load_artifact_npz(client, facts.best_trial.run_id, PREDICTIONS_ARTIFACT)
        facts.best_test_probs = stored["test_probs"]
        if facts.multilabel:
            facts.best_thresholds = metrics.decision_thresholds(stored, len(facts.classes))
        facts.test_images = _test_images(config, split["test"], sweep.data.tags.get(TAG_DATA_FINGERPRINT), facts.notes)
        if facts.test_images is not None:
            _explain_trial(client, facts, cam_run, cam_layer)
    else:
        facts.notes.append("No trial stored predictions: no confusion matrix, per-class scores or error montage.")
    return facts


def sweep_test_data(client, sweep_run_id: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(test images, test labels, classes) of a sweep, as it trained on them; LookupError when the data changed."""
    sweep = client.get_run(sweep_run_id)
    config = parse_config(yaml.safe_load(_read_text(client, sweep_run_id, "config.yaml")), source="config.yaml")
    split = tracking.load_artifact_npz(client, sweep_run_id, SPLIT_ARTIFACT)
    notes = []
    images = _test_images(config, split["test"], sweep.data.tags.get(TAG_DATA_FINGERPRINT), notes)
    if images is None:
        raise LookupError(notes[0])
    return images, split["test_labels"], [str(c) for c in split["classes"]]


def _explain_trial(client, facts: SweepFacts, run_id: str | None, layer: str | None) -> None:
    from visionsweep.report._explain import explain

    by_run = {t.run_id: t for t in facts.trials}
    members = [by_run[m["run_id"]] for m in (facts.ensemble or {}).get("final", {}).get("members", [])
               if m["run_id"] in by_run and by_run[m["run_id"]].best is not None]
    if run_id:
        why = "the trial chosen"
    elif members:
        best = (max if facts.mode == "max" else min)(members, key=lambda t: t.best)
        run_id, why = best.run_id, "the final ensemble's best member by validation score"
    else:
        run_id, why = facts.best_trial.run_id, "the best trial by validation score"
    try:
        facts.explanation = explain(client, run_id, facts.test_images, facts.test_labels, facts.classes, layer)
    except (LookupError, OSError, RuntimeError, ValueError) as err:
        facts.notes.append(f"No class activation maps for run {run_id}: {err}")
        return
    name = by_run[run_id].name if run_id in by_run else run_id
    facts.explained_why = f"trial {name} (run {run_id}), {why}"


def _test_images(config: SweepConfig, test_rows: np.ndarray, fingerprint: str | None, notes: list[str]):
    """The sweep's test images, if the dataset still decodes to the pixels the sweep trained on."""
    try:
        dataset = data.load(config.data)
    except (OSError, ValueError) as err:
        notes.append(f"Dataset {config.data.dataset!r} could not be loaded ({err}): no error montage.")
        return None
    if fingerprint and dataset.fingerprint() != fingerprint:
        notes.append(
            f"Dataset {config.data.dataset!r} has changed since the sweep (fingerprint {dataset.fingerprint()}, "
            f"sweep {fingerprint}): no error montage, its images would not match the predictions."
        )
        return None
    return dataset.images[test_rows]


def _latest_ensemble(client, sweep) -> dict | None:
    runs = client.search_runs(
        [sweep.info.experiment_id],
        filter_string=f"tags.`{TAG_PARENT}` = '{sweep.info.run_id}' and tags.`{TAG_KIND}` = '{KIND_ENSEMBLE}'"
        " and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    return json.loads(_read_text(client, runs[0].info.run_id, ENSEMBLE_TABLE_ARTIFACT))


def _read_text(client, run_id: str, name: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        return Path(client.download_artifacts(run_id, name, folder)).read_text()
