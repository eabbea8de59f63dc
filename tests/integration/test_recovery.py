"""A resumed driver rebuilds its trial records from MLflow alone (real sqlite store, no Ray)."""

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from support.stores import sqlite_store
from visionsweep import record, tracking
from visionsweep.config import parse_config
from visionsweep.outcome import Outcome
from visionsweep.trainables import TrialData

pytestmark = pytest.mark.integration


def test_records_come_back_and_lost_runs_are_set_aside(tmp_path):
    client = MlflowClient(sqlite_store(tmp_path))
    experiment = client.create_experiment("recovery", artifact_location=(tmp_path / "artifacts").as_uri())
    sweep = client.create_run(experiment, tags={record.TAG_KIND: "sweep"}).info.run_id

    def trial(trial_id, epochs, status="RUNNING", outcome=None):
        run_id = client.create_run(experiment, tags={
            "mlflow.parentRunId": sweep, record.TAG_KIND: "trial", "visionsweep.trial_id": trial_id,
            "visionsweep.nodes": "127.0.0.3,127.0.0.2",
        }).info.run_id
        client.log_param(run_id, "lr", "0.1")
        for epoch in range(1, epochs + 1):
            client.log_metric(run_id, "val_accuracy", epoch / 10, step=epoch)
        if outcome:
            client.set_tag(run_id, record.TAG_OUTCOME, outcome)
            client.log_metric(run_id, "best_val_accuracy", epochs / 10)
            client.log_metric(run_id, "test_accuracy", 0.9)
        if status != "RUNNING":
            client.set_terminated(run_id, status)
        return run_id

    trial("done", 3, "FINISHED", "complete")
    interrupted = trial("interrupted", 2, "KILLED")  # closed by a driver stopped with Ctrl-C
    never_recorded = trial("lost", 1)  # the dead driver started it after Ray's last snapshot

    records = tracking.recover_records(client, sweep, "val_accuracy")
    done = records["done"]
    assert (done.outcome, done.epochs, done.best_val, done.test_scores) == (Outcome.COMPLETE, 3, 0.3, {"test_accuracy": 0.9})
    assert done.params == {"lr": 0.1} and done.nodes == ["127.0.0.3", "127.0.0.2"]
    assert records["interrupted"].outcome is None and records["interrupted"].metric_by_epoch == {1: 0.1, 2: 0.2}
    assert client.get_run(interrupted).info.status == "RUNNING", "reopened for the restored Tuner to continue"

    records["interrupted"].outcome = Outcome.COMPLETE  # the restored Tuner finished it
    assert tracking.set_aside_lost(client, records) == [never_recorded]
    lost = client.get_run(never_recorded)
    assert lost.info.status == "KILLED" and lost.data.tags[record.TAG_KIND] == record.KIND_LOST
    assert sorted(records) == ["done", "interrupted"]
    assert len(tracking.trial_runs(client, sweep)) == 2


def test_resumed_logger_closes_runs_of_trials_ray_restored_as_ended(tmp_path):
    # The dead driver logged one epoch of a trial; Ray finished it and snapshotted it TERMINATED with its
    # result.json; the driver died before its queued MLflow writes went out. Tune restores the trial ended
    # and calls no hook for it.
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    uri = sqlite_store(tmp_path)
    client = MlflowClient(uri)
    experiment = client.create_experiment("recovery", artifact_location=(tmp_path / "artifacts").as_uri())
    sweep = client.create_run(experiment, tags={record.TAG_KIND: "sweep"}).info.run_id
    run_id = client.create_run(experiment, tags={"mlflow.parentRunId": sweep, record.TAG_KIND: "trial",
                                                 "visionsweep.trial_id": "t1"}).info.run_id
    client.log_metric(run_id, "val_accuracy", 0.1, step=1)

    results = [{"epoch": epoch, "val_accuracy": epoch / 10, "train_loss": 1 / epoch} for epoch in (1, 2, 3)]
    trial = Trial("trainable", stub=True, trial_id="t1", config={"lr": 0.01},
                  storage=StorageContext(str(tmp_path / "checkpoints"), "sweep"))
    trial.storage.trial_dir_name = "t1"
    Path(trial.path).mkdir(parents=True)
    Path(trial.path, "result.json").write_text("".join(json.dumps(result) + "\n" for result in results))
    trial.run_metadata.last_result = results[-1]
    trial.set_status(Trial.TERMINATED)

    config = parse_config({"name": "recovery", "space": {"lr": {"loguniform": [1e-3, 1e-1]}},
                           "scheduler": {"max_epochs": 3, "grace_period": 1}})
    images, labels = np.zeros((4, 8, 8, 1), np.uint8), np.zeros(4, dtype=int)
    data = TrialData(images, labels, images, labels, images, labels, classes=("0",))
    logger = tracking.TrialLogger(tracking.TimedClient(uri), experiment, sweep, config, data)
    logger.records = tracking.recover_records(client, sweep, "val_accuracy")
    logger.on_step_begin(0, [trial])

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[record.TAG_OUTCOME] == "complete"
    history = client.get_metric_history(run_id, "val_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2), (3, 0.3)], "epochs 2 and 3 caught up"
    assert tracking.set_aside_lost(client, logger.records) == []
