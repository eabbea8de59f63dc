"""A small sweep end to end on real Ray and real MLflow: every trial tracked, every run closed."""

import subprocess
import sys

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
from visionsweep.outcome import Outcome

pytestmark = pytest.mark.integration

TRIALS = 8
SWEEP = {
    "name": "it-sweep",
    "data": {"dataset": "digits"},
    "model": "cnn",
    # n_conv 4 pools an 8x8 image below one pixel: those trials raise, and the sweep must go on.
    "space": {"lr": {"loguniform": [0.01, 0.3]}, "n_conv": {"categorical": [1, 2, 4]}, "channels": {"categorical": [8, 16]}},
    "search": {"sampler": "random", "trials": TRIALS, "seed": 1},
    "scheduler": {"kind": "asha", "max_epochs": 4, "grace_period": 1, "reduction_factor": 2},
    # The default retries (max_failures 2) are for lost processes and nodes (the cluster tests' subject): a
    # trial that cannot build its model fails once, and is not retried.
    "resources": {"cpu": 1, "concurrent": 2},
}


def check_sweep(result, uri):
    client = MlflowClient(uri)
    sweep = client.get_run(result.sweep_run_id)
    assert sweep.info.status == "FINISHED" and sweep.data.tags[record.TAG_KIND] == "sweep"
    trials = tracking.trial_runs(client, result.sweep_run_id)
    assert len(trials) == TRIALS
    split = tracking.load_artifact_npz(client, result.sweep_run_id, "split.npz")
    n_val, n_test = len(split["val"]), len(split["test"])

    by_outcome = {o: [r for r in trials if r.data.tags[record.TAG_OUTCOME] == o.value] for o in Outcome}
    assert all(r.info.status != "RUNNING" for r in trials)
    assert by_outcome[Outcome.FAILED], "n_conv=4 trials must fail"
    for run in by_outcome[Outcome.FAILED]:
        assert run.info.status == "FAILED"
        assert "smaller than one pixel" in run.data.tags["visionsweep.error"]
    assert by_outcome[Outcome.PRUNED], "ASHA with reduction factor 2 must stop some trials"
    for run in by_outcome[Outcome.PRUNED]:
        assert int(run.data.tags["visionsweep.pruned_at_epoch"]) < 4
    for run in by_outcome[Outcome.COMPLETE] + by_outcome[Outcome.PRUNED]:
        assert run.info.status == "FINISHED"
        assert set(run.data.params) == {"lr", "n_conv", "channels"}
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        stored = tracking.load_artifact_npz(client, run.info.run_id, "predictions.npz")
        assert stored["val_probs"].shape == (n_val, 10) and stored["test_probs"].shape == (n_test, 10)
        assert stored["val_probs"].dtype == np.float32 and stored["classes"].tolist() == [str(i) for i in range(10)]

    # The Optuna study agrees with MLflow, trial by trial.
    states = [t.state for t in result.study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(by_outcome[Outcome.PRUNED])
    assert states.count(optuna.trial.TrialState.FAIL) == len(by_outcome[Outcome.FAILED])
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(by_outcome[Outcome.COMPLETE])

    table = run_ensemble(client, result.sweep_run_id, ["1", "3", "100%"])
    best = result.best("max")
    assert table.rows[0]["soft"] == table.rows[0]["hard"] == best.test_scores["test_accuracy"] == table.best_single
    ensemble_run = client.get_run(table.run_id)
    assert ensemble_run.info.status == "FINISHED"
    assert ensemble_run.data.tags["mlflow.parentRunId"] == result.sweep_run_id
    assert {a.path for a in client.list_artifacts(table.run_id)} >= {"ensemble_table.txt", "ensemble_table.json"}


def test_sweep_on_sqlite(local_ray, tmp_path):
    uri = sqlite_store(tmp_path)
    result = run_sweep(parse_config(SWEEP), uri, storage_path=str(tmp_path / "ray"))
    check_sweep(result, uri)


def test_sweep_against_mlflow_server(local_ray, mlflow_server, tmp_path):
    result = run_sweep(parse_config(SWEEP), mlflow_server, storage_path=str(tmp_path / "ray"))
    check_sweep(result, mlflow_server)


def test_a_time_budget_stops_the_running_trials_as_pruned_with_their_predictions(local_ray, tmp_path):
    """search.time_budget_s: Tune stops the running trials without a hook; their runs still end with their
    predictions, the study hears of them as PRUNED, and nothing is left RUNNING."""
    uri = sqlite_store(tmp_path)
    config = parse_config({
        "name": "it-budget", "space": {"lr": {"loguniform": [0.01, 0.3]}},
        "search": {"sampler": "random", "trials": 20, "seed": 1, "time_budget_s": 45},
        "scheduler": {"kind": "fifo", "max_epochs": 2000},  # digits epochs take 0.1-0.2 s: far beyond the budget
        "resources": {"cpu": 1, "concurrent": 2},
    })
    result = run_sweep(config, uri, storage_path=str(tmp_path / "ray"))
    client = MlflowClient(uri)
    assert client.get_run(result.sweep_run_id).info.status == "FINISHED"
    trials = tracking.trial_runs(client, result.sweep_run_id)
    assert len(trials) == 2, "the two trials running when the budget ran out; none after"
    for run in trials:
        assert run.info.status == "FINISHED" and run.data.tags[record.TAG_OUTCOME] == "pruned"
        epochs = len(client.get_metric_history(run.info.run_id, "val_accuracy"))
        assert 1 <= epochs < 2000 and int(run.data.tags["visionsweep.pruned_at_epoch"]) == epochs
        assert "best_val_accuracy" in run.data.metrics and "test_accuracy" in run.data.metrics
        assert tracking.load_artifact_npz(client, run.info.run_id, "predictions.npz")["test_probs"].shape[1] == 10
    assert [t.state for t in result.study.trials] == [optuna.trial.TrialState.PRUNED] * 2


def test_cli_run_and_ensemble(local_ray, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "sweep.yaml"
    config.write_text("name: cli\nspace: {lr: {loguniform: [0.01, 0.3]}}\n")
    assert main(["run", str(config), "--set", "search.trials=2", "--set", "scheduler.max_epochs=2",
                 "--storage-path", str(tmp_path / "ray")]) == 0
    out = capsys.readouterr().out
    assert "2 trials (" in out and "best trial" in out and "visionsweep ui --tracking-uri sqlite:///mlflow.db" in out
    assert (tmp_path / "mlflow.db").exists()  # the default store, in the working directory
    assert main(["ensemble", "--experiment", "cli", "--top-k", "1", "100%"]) == 0
    assert "best single" in capsys.readouterr().out


def test_bad_config_exits_2_before_ray_starts(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("name: bad\nscheduler: {kind: hyperband}\n")
    # In a fresh process, so that "Ray never started" is checkable: ray must not even be imported.
    probe = (
        "import sys; from visionsweep.cli import main; rc = main(['run', sys.argv[1]]); "
        "print('ray imported' if 'ray' in sys.modules else 'ray not imported'); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(config)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert "scheduler.kind = 'hyperband': Input should be 'asha' or 'fifo'" in done.stderr
    assert "ray not imported" in done.stdout and not (tmp_path / "mlflow.db").exists()
