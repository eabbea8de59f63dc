import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from ray import tune
from ray.tune.result import EXPR_RESULT_FILE

from visionsweep import metrics, models
from visionsweep.outcome import Outcome, failure_of, failure_reason, trial_error, trial_outcome
from visionsweep.record import (
    BEST_EPOCH_METRIC, ERROR_ARTIFACT, KIND_TRIAL, PREDICTIONS_ARTIFACT, TAG_ERROR, TAG_FAILURE_REASON, TAG_KIND,
    TAG_MODEL, TAG_NEVER_PREDICTED, TAG_NODE, TAG_NODES, TAG_OUTCOME, TAG_PARENT, TAG_PREDICTIONS, TAG_PRUNED_AT_EPOCH,
    TAG_RESTARTS, TAG_TRIAL_ID, TEST_PREFIX, TRIAL_MODEL_FOLDER, best_metric, restart_error_artifact,
)
from visionsweep.tracking._store import TimedClient, log_params
from visionsweep.trainables import MODEL_FILE, PREDICTIONS_FILE, TrialData

ERROR_TAG_CHARS = 5000  # MLflow tag values hold at most 8000 characters
TAG_IMPORT_PATH = "visionsweep.model.import_path"  # a user's model: where it was imported from
TAG_SOURCE_SHA256 = "visionsweep.model.source_sha256"  # ... and the hash of its code (models.imported)
TAG_SOURCE_FILE = "visionsweep.model.source"  # ... the file or package the driver read it from
TAG_PACKAGE_VERSION = "visionsweep.model.package_version"  # ... or the version of the package it is installed from


@dataclass
class TrialRecord:
    """What the sweep learned from one trial, as logged to its MLflow run."""

    trial_id: str
    run_id: str
    params: dict
    outcome: Outcome | None = None  # None while running
    epochs: int = 0
    best_val: float | None = None  # the search metric at the best validation epoch
    test_scores: dict = field(default_factory=dict)
    error: str | None = None
    metric_by_epoch: dict = field(default_factory=dict)  # the search metric, per epoch
    early_stopped: bool = False  # ended by its own patience, not by the scheduler
    nodes: list = field(default_factory=list)  # IP addresses of the nodes it ran on, in order
    restarts: int = 0  # times Ray retried it from its last checkpoint after its process or node died
    never_predicted: list = field(default_factory=list)  # classes it gives no test row (a lost rare label)


class TrialLogger(tune.Callback):
    """Ray Tune callback on the driver: one nested MLflow run per trial, closed whatever happens.

    Per result, one `log_batch` with the trial's own metrics (not Ray's bookkeeping). When the trial
    ends, its best-epoch predictions go up as `predictions.npz`, scored on the test rows, and the run
    gets its outcome tag and final status.

    A trial whose process or node died and that Ray retries from its last checkpoint keeps its run:
    the run continues at the next epoch, `visionsweep.restarts` counts the retries, each failure is
    kept as `error-restart-N.txt`, and `visionsweep.nodes` lists every node it ran on.
    """

    def __init__(self, client: TimedClient, experiment_id: str, parent_run_id: str, sweep, data: TrialData):
        self.client = client
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.metric = sweep.search.metric
        self.max_epochs = sweep.scheduler.max_epochs
        self.data = data
        self.sweep = sweep
        self.records: dict[str, TrialRecord] = {}
        self.interrupt = None  # the sweep's Ctrl-C watcher: `interrupt.interrupted` once the user stopped the sweep
        self._restored_trials_settled = False
        self._tags_by_model: dict[str, dict[str, str]] = {}

    def on_step_begin(self, iteration, trials, **info):
        # A resumed sweep: trials that ended before the dead driver's last snapshot come back already
        # ended, and Tune calls no hook for them. Their runs, still open, are closed here, once.
        if not self._restored_trials_settled:
            self._restored_trials_settled = True
            self._finish_ended(trials)

    def on_experiment_end(self, trials, **info):
        # The time budget (search.time_budget_s) ran out: Tune stopped the running trials without a hook. (Ctrl-C
        # stops them the same way; those stay open, to be closed killed and continued by a resumed sweep.)
        if not getattr(self.interrupt, "interrupted", False):
            self._finish_ended(trials)

    def _finish_ended(self, trials) -> None:
        """Closes the open runs of trials that Tune has ended without telling us."""
        for trial in trials:
            record = self.records.get(trial.trial_id)
            if record is not None and record.outcome is None and trial.status in (trial.TERMINATED, trial.ERROR):
                self._finish(trial, errored=trial.status == trial.ERROR)

    def on_trial_start(self, iteration, trials, trial, **info):
        record = self.records.get(trial.trial_id)
        if record is not None:  # restarted after a failure or a driver crash: the same run continues
            if record.outcome is not None:  # its run was closed, and Tune goes on with it: its end is to come
                self._reopen(record)
            if not record.params:  # a dead driver's queued writes never went out: its params among them
                log_params(self.client, record.run_id, trial.config)
                record.params = dict(trial.config)
            self._catch_up(iteration, trials, trial)
            return
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{trial.trial_id}",
            tags={TAG_PARENT: self.parent_run_id, TAG_KIND: KIND_TRIAL, TAG_TRIAL_ID: trial.trial_id,
                  **self._model_tags(self.sweep.trial_model(trial.config))},
        )
        log_params(self.client, run.info.run_id, trial.config)
        self.records[trial.trial_id] = TrialRecord(trial.trial_id, run.info.run_id, dict(trial.config))

    def _model_tags(self, model: str) -> dict[str, str]:
        """The model's name; for a user's model its import path and code: hash and file, or package version."""
        if model not in self._tags_by_model:
            tags = {TAG_MODEL: model}
            if models.is_import_path(model):
                code = models.user_code(model)
                tags[TAG_IMPORT_PATH] = model
                if code.unit is not None:
                    tags.update({TAG_SOURCE_SHA256: code.sha256, TAG_SOURCE_FILE: str(code.unit)})
                elif code.package_version:
                    tags[TAG_PACKAGE_VERSION] = code.package_version
            self._tags_by_model[model] = tags
        return self._tags_by_model[model]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if failure_of(result):  # the trial's error, not an epoch: its run gets it when the trial ends
            return
        record = self.records[trial.trial_id]
        if int(result["epoch"]) <= record.epochs:  # replayed from an older checkpoint: MLflow has this epoch
            return
        record.epochs = int(result["epoch"])
        record.metric_by_epoch[record.epochs] = result[self.metric]
        record.early_stopped = bool(result.get("early_stopped"))
        node = result.get("node_ip")  # Tune adds it to every result
        if node and node not in record.nodes[-1:]:
            record.nodes.append(node)
            self.client.set_tag(record.run_id, TAG_NODE, node)
            self.client.set_tag(record.run_id, TAG_NODES, ",".join(record.nodes))
        now = int(time.time() * 1000)
        values = {k: v for k, v in result.items() if k.startswith(("train_", "val_"))}
        values["epoch_seconds"] = result.get("time_this_iter_s", 0.0)
        self.client.log_batch(
            record.run_id, metrics=[Metric(k, float(v), now, record.epochs) for k, v in values.items()]
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, errored=True)

    def _reopen(self, record: TrialRecord) -> None:
        """Takes back the end of a run whose trial continues: its outcome, tags and best scores come anew."""
        record.outcome, record.error = None, None
        for tag in ("visionsweep.pruned_at_epoch", TAG_ERROR, TAG_FAILURE_REASON):
            try:
                self.client.delete_tag(record.run_id, tag)
            except MlflowException:  # a tag that run never had
                pass
        self.client.update_run(record.run_id, status="RUNNING")

    def _catch_up(self, iteration, trials, trial) -> None:
        """Logs the results Ray holds for a trial that MLflow never got (a driver that died with them queued)."""
        for result in _results_after(trial, self.records[trial.trial_id].epochs):
            self.on_trial_result(iteration, trials, trial, result)

    def on_trial_recover(self, iteration, trials, trial, **info):
        record = self.records[trial.trial_id]
        record.restarts += 1
        self.client.set_tag(record.run_id, TAG_RESTARTS, str(record.restarts))
        self.client.log_text(record.run_id, trial_error(trial, errored=True), restart_error_artifact(record.restarts))

    def _finish(self, trial, errored: bool) -> None:
        record = self.records[trial.trial_id]
        if record.outcome is not None:  # ended before a driver crash, then re-run from its last checkpoint
            return
        self._catch_up(None, None, trial)
        record.error = trial_error(trial, errored)
        errored = record.error is not None
        record.outcome = trial_outcome(record.epochs or None, self.max_epochs, errored, record.early_stopped)
        tags = {TAG_OUTCOME: record.outcome.value}
        if record.outcome is Outcome.PRUNED:
            tags[TAG_PRUNED_AT_EPOCH] = str(record.epochs)
        if errored:
            tags[TAG_ERROR] = record.error[-ERROR_TAG_CHARS:]
            tags[TAG_FAILURE_REASON] = failure_reason(record.error)[:ERROR_TAG_CHARS]
            self.client.log_text(record.run_id, record.error, ERROR_ARTIFACT)
        elif trial.checkpoint is not None:
            self._log_best_epoch(record, trial.checkpoint, trial.config, (trial.last_result or {}).get("best_epoch"))
            if record.never_predicted:
                tags[TAG_NEVER_PREDICTED] = ", ".join(record.never_predicted)
        self.client.log_batch(record.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(record.run_id, "FAILED" if errored else "FINISHED")

    def _log_best_epoch(self, record: TrialRecord, checkpoint, config: dict, best_epoch: int | None) -> None:
        """The best epoch's score, and what the trial kept of that epoch: predictions (scored on the test rows)
        and model weights. A training function that passed no predictions leaves a run without them."""
        with checkpoint.as_directory() as folder, tempfile.TemporaryDirectory() as upload:
            final, thresholds = {}, None
            path = Path(folder, PREDICTIONS_FILE)
            if path.exists():
                task = self.data.task
                with np.load(path, allow_pickle=False) as predictions:
                    best_epoch = int(predictions["epoch"])
                    # Multi-label: the thresholds tuned on validation rows, applied unchanged to the test rows.
                    if task.multilabel:
                        thresholds = metrics.decision_thresholds(predictions, task.num_classes)
                    test_probs = predictions["test_probs"] if "test_probs" in predictions else None
                if test_probs is not None:
                    # Per class too (test_f1_<class>, ...); the record keeps the totals for the sweep's summary.
                    final = task.scores(test_probs, self.data.y_test, TEST_PREFIX, thresholds, per_class=True)
                    record.test_scores = {f"{TEST_PREFIX}{m}": final[f"{TEST_PREFIX}{m}"] for m in task.measures}
                    record.never_predicted = metrics.never_predicted(test_probs, task.classes, thresholds)
                    Path(upload, PREDICTIONS_ARTIFACT).write_bytes(path.read_bytes())
            if Path(folder, MODEL_FILE).exists():
                models.save_trained(Path(upload, TRIAL_MODEL_FOLDER), Path(folder, MODEL_FILE),
                                    self._model_spec(config))
            if any(Path(upload).iterdir()):
                self.client.log_artifacts(record.run_id, upload)  # one call for predictions and model
        self.client.set_tag(record.run_id, TAG_PREDICTIONS, "stored" if record.test_scores else "none")
        if best_epoch is None or best_epoch not in record.metric_by_epoch:
            return
        record.best_val = record.metric_by_epoch[best_epoch]
        final.update({best_metric(self.metric): record.best_val, BEST_EPOCH_METRIC: best_epoch})
        if thresholds is not None:
            final.update({f"threshold_{metrics.metric_name(c)}": t for c, t in zip(self.data.classes, thresholds)})
        now = int(time.time() * 1000)
        self.client.log_batch(record.run_id, metrics=[Metric(k, float(v), now, best_epoch) for k, v in final.items()])

    def _model_spec(self, config: dict) -> models.ModelSpec | None:
        """What rebuilds the trial's model around its weights; None for your training function's own model with no
        builder named for it (only the weights can be kept)."""
        if self.sweep.trainable and "model" not in self.sweep.model_fields_set:
            return None
        return models.ModelSpec(self.sweep.trial_model(config), self.sweep.trial_settings(config)[1],
                                self.data.model_shape, list(self.data.classes), self.data.normalization)

    def close_open_runs(self) -> None:
        """Closes, as KILLED, the runs of trials that never ended (an interrupted or crashed sweep)."""
        for record in self.records.values():
            if record.outcome is None:
                record.outcome = Outcome.KILLED
                self.client.set_tag(record.run_id, TAG_OUTCOME, Outcome.KILLED.value)
                self.client.set_terminated(record.run_id, "KILLED")

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment state; the client and records stay on this driver.
        return {**self.__dict__, "client": None, "records": {}, "interrupt": None}


def _results_after(trial, epoch: int) -> list[dict]:
    """The trial's results after `epoch`: those in its result.json in Tune's storage, ending with its last result."""
    last = trial.last_result or {}
    if last.get("epoch", 0) <= epoch:
        return []
    try:
        with trial.storage.storage_filesystem.open_input_stream(f"{trial.path}/{EXPR_RESULT_FILE}") as stream:
            history = [json.loads(line) for line in stream.readall().decode().splitlines() if line.strip()]
    except (OSError, AttributeError):  # no result file synced yet, or a trial without storage
        history = []
    return [result for result in history if epoch < result.get("epoch", 0) < last["epoch"]] + [last]

