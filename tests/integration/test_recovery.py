"""A resumed driver rebuilds its trial records from MLflow alone (real sqlite store, no Ray)."""

import pytest
from mlflow.tracking import MlflowClient

from visionsweep import tracking
from visionsweep.outcome import Outcome

pytestmark = pytest.mark.integration


def test_records_come_back_and_lost_runs_are_set_aside(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("recovery", artifact_location=(tmp_path / "artifacts").as_uri())
    sweep = client.create_run(experiment, tags={tracking.TAG_KIND: "sweep"}).info.run_id

    def trial(trial_id, epochs, status="RUNNING", outcome=None):
        run_id = client.create_run(experiment, tags={
            "mlflow.parentRunId": sweep, tracking.TAG_KIND: "trial", "visionsweep.trial_id": trial_id,
            "visionsweep.nodes": "127.0.0.3,127.0.0.2",
        }).info.run_id
        client.log_param(run_id, "lr", "0.1")
        for epoch in range(1, epochs + 1):
            client.log_metric(run_id, "val_accuracy", epoch / 10, step=epoch)
        if outcome:
            client.set_tag(run_id, tracking.TAG_OUTCOME, outcome)
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
    assert lost.info.status == "KILLED" and lost.data.tags[tracking.TAG_KIND] == tracking.LOST
    assert sorted(records) == ["done", "interrupted"]
    assert len(tracking.trial_runs(client, sweep)) == 2
