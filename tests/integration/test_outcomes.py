"""Every outcome told truthfully, on real Ray and real MLflow: diverged and failed trials end FAILED with their
reason (in MLflow, in the Optuna study, on the terminal and in the exit status), and are not retried."""

from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

from support.stores import sqlite_store
from visionsweep import record, tracking
from visionsweep.cli import main
from visionsweep.config import parse_config
from visionsweep.ensemble import run_ensemble
from visionsweep.orchestrator import run_sweep

pytestmark = pytest.mark.integration

FAIL = optuna.trial.TrialState.FAIL


def outcomes(client, sweep_run_id) -> dict[str, list]:
    runs = {}
    for run in tracking.trial_runs(client, sweep_run_id):
        runs.setdefault(run.data.tags[record.TAG_OUTCOME], []).append(run)
    return runs


def test_a_diverged_trial_fails_at_once_with_its_reason_and_stays_out_of_the_ensemble(local_ray, tmp_path):
    uri = sqlite_store(tmp_path)
    config = parse_config({
        "name": "it-diverged",
        # SGD at lr 60-90 sends the loss to NaN within an epoch or two.
        "space": {"lr": {"categorical": [0.03, 0.1, 60.0, 90.0]}, "channels": {"categorical": [8]}},
        "search": {"sampler": "random", "trials": 4, "seed": 3},  # lr 0.1, 0.1, 90, 60
        "scheduler": {"kind": "fifo", "max_epochs": 4},
        "resources": {"cpu": 1, "concurrent": 2},
    })
    result = run_sweep(config, uri, storage_path=str(tmp_path / "ray"))
    client = MlflowClient(uri)
    by_outcome = outcomes(client, result.sweep_run_id)
    diverged = sorted(by_outcome.get("failed", []), key=lambda run: float(run.data.params["lr"]))
    assert [float(run.data.params["lr"]) for run in diverged] == [60.0, 90.0]
    for run in diverged:
        assert run.info.status == "FAILED"
        reason = run.data.tags["visionsweep.failure_reason"]
        assert reason.startswith("Diverged: ") and " is nan at epoch " in reason
        epoch = int(reason.rsplit(" ", 1)[1])
        assert epoch < 4, "ended at the epoch the loss stopped being finite, not after every epoch"
        losses = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert len(losses) == epoch - 1 and np.isfinite(losses).all(), "no NaN epoch is logged as a result"
        assert "predictions.npz" not in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "best_val_accuracy" not in run.data.metrics
        error = Path(client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))).read_text()
        assert "Traceback" in error and reason in error
    assert len(by_outcome["complete"]) == 2
    states = {t.params["lr"]: t.state for t in result.study.trials}
    assert states[60.0] == states[90.0] == FAIL and states[0.1] == optuna.trial.TrialState.COMPLETE

    table = run_ensemble(client, result.sweep_run_id, ["100%"])
    assert table.rows[0]["members"] == 2 and table.rows[0]["soft"] > 0.8


def test_a_failing_trial_is_not_retried_and_a_sweep_where_every_trial_failed_exits_1(local_ray, tmp_path, capfd):
    config = tmp_path / "sweep.yaml"
    # n_conv 4 pools an 8x8 digit below one pixel: the model cannot be built, however often it is tried.
    config.write_text(
        "name: it-all-fail\n"
        "space: {lr: {loguniform: [0.01, 0.3]}, n_conv: {categorical: [4]}}\n"
        "search: {sampler: random, trials: 2}\n"
        "scheduler: {kind: fifo, max_epochs: 2}\n"
        "resources: {cpu: 1, concurrent: 2, max_failures: 2}\n"
    )
    uri = sqlite_store(tmp_path)
    code = main(["run", str(config), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")])
    out, err = capfd.readouterr()
    assert code == 1
    assert "every trial failed" in err and "smaller than one pixel" in err
    failure_lines = [line for line in out.splitlines() if " failed after " in line]
    assert len(failure_lines) == 2 and all("smaller than one pixel" in line for line in failure_lines)
    assert out.count("Traceback") == 0, "one line per failed trial on the terminal, the trace in MLflow"

    client = MlflowClient(uri)
    runs = outcomes(client, tracking.latest_sweep(client, "it-all-fail"))
    assert list(runs) == ["failed"] and len(runs["failed"]) == 2
    for run in runs["failed"]:
        assert "visionsweep.restarts" not in run.data.tags, "an error in the model is not retried"
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"error.txt"}
        assert "Traceback" in run.data.tags["visionsweep.error"]
