"""Sweeps on a real two-node Ray cluster on 127.0.0.x, with real faults: a job submitted from outside,
fractional GPUs, the MLflow server restarted, the driver and a worker node killed with SIGKILL.

Every test checks the end state in MLflow (PostgreSQL backend): each trial's run closed, every epoch's
metrics present once, and the node each trial ran on. Measurements are printed (`pytest -s`).
"""

import os
import signal
import time

import optuna
import pytest
from harness import Driver, write_sweep
from mlflow.tracking import MlflowClient

from support.servers import wait_for
from visionsweep import tracking

pytestmark = pytest.mark.cluster


def sweep_runs(uri: str, experiment: str):
    client = MlflowClient(uri)
    sweep_id = tracking.latest_sweep(client, experiment)
    return client, client.get_run(sweep_id), tracking.trial_runs(client, sweep_id)


def steps(client, run, metric="val_accuracy") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))


def epochs_logged(uri: str, experiment: str) -> dict[str, int]:
    """Trial run id -> epochs in MLflow so far; {} before the sweep has started."""
    try:
        client, _, runs = sweep_runs(uri, experiment)
    except LookupError:
        return {}
    return {run.info.run_id: len(steps(client, run)) for run in runs}


def run_driver(config, cluster, tracking_server) -> Driver:
    """`visionsweep run` against the cluster, checkpoints beside the config."""
    return Driver(config.parent, "run", str(config), "--address", cluster.address,
                  "--tracking-uri", tracking_server.url, "--storage-path", str(config.parent / "checkpoints"))


def check_all_closed(client, sweep, runs, trials: int, epochs: int) -> None:
    assert sweep.info.status == "FINISHED"
    assert len(runs) == trials
    assert len({run.data.tags["visionsweep.trial_id"] for run in runs}) == trials, "a trial logged twice"
    for run in runs:
        assert run.info.status == "FINISHED", (run.info.run_id, run.info.status, run.data.tags.get("visionsweep.error"))
        assert steps(client, run) == list(range(1, epochs + 1)), "an epoch's metrics missing or doubled"


def test_submitted_job_runs_trials_on_both_nodes(cluster, tracking_server, tmp_path):
    # Each node has 2 CPUs and each trial takes 2, so the head runs one trial at a time. The worker first sets up
    # the job's runtime environment (the uploaded package): trials of 20 epochs keep the head busy long enough
    # that it cannot finish all four before the worker takes one.
    config = write_sweep(tmp_path, name="cl-submit", search={"trials": 4}, scheduler={"max_epochs": 20},
                         resources={"cpu": 2, "concurrent": 2})
    started = time.monotonic()
    submit = Driver(tmp_path, "submit", str(config), "--address", cluster.job_server, "--follow",
                    "--tracking-uri", tracking_server.url, "--storage-path", str(tmp_path / "checkpoints"))
    assert submit.wait() == 0, submit.text[-3000:]
    print(f"\nMEASURED submitted 4-trial sweep, submit to job end: {time.monotonic() - started:.1f} s")
    assert "submitted job" in submit.text and "job succeeded" in submit.text

    client, sweep, runs = sweep_runs(tracking_server.url, "cl-submit")
    check_all_closed(client, sweep, runs, trials=4, epochs=20)
    nodes = {run.data.tags["visionsweep.node"] for run in runs}
    assert nodes == {cluster.head_ip, cluster.worker_ip}
    assert all(run.data.tags["visionsweep.nodes"] == run.data.tags["visionsweep.node"] for run in runs)


def test_four_trials_share_one_logical_gpu(cluster, tracking_server, tmp_path):
    # Epochs enough that no trial ends before the last of the four processes has started (2 cores: ~10 s).
    config = write_sweep(tmp_path, name="cl-gpu", search={"trials": 4}, scheduler={"max_epochs": 20},
                         resources={"cpu": 0.25, "gpu": 0.25, "concurrent": 4})
    driver = run_driver(config, cluster, tracking_server)
    assert driver.wait() == 0, driver.text[-3000:]

    client, sweep, runs = sweep_runs(tracking_server.url, "cl-gpu")
    check_all_closed(client, sweep, runs, trials=4, epochs=20)
    # The worker node holds the cluster's only (logical) GPU: every trial ran there, all four at once.
    assert {run.data.tags["visionsweep.node"] for run in runs} == {cluster.worker_ip}
    intervals = [(run.info.start_time, run.info.end_time) for run in runs]
    at_once = max(sum(start <= moment < end for start, end in intervals) for moment, _ in intervals)
    assert at_once == 4


def test_metrics_survive_an_mlflow_server_restart(cluster, tracking_server, tmp_path):
    epochs = 30  # about 0.3 s each: most of them end while the server is away
    config = write_sweep(tmp_path, name="cl-outage", search={"trials": 2}, scheduler={"max_epochs": epochs},
                         resources={"cpu": 1, "concurrent": 2})
    driver = run_driver(config, cluster, tracking_server)
    wait_for(lambda: sum(epochs_logged(tracking_server.url, "cl-outage").values()) >= 1, 120, "the first epoch")
    down = time.time()
    tracking_server.stop()
    time.sleep(4)  # trials keep training; their results queue up on the driver
    tracking_server.start()
    up = time.time()
    assert driver.wait() == 0, driver.text[-3000:]
    finished = time.time()

    client, sweep, runs = sweep_runs(tracking_server.url, "cl-outage")
    check_all_closed(client, sweep, runs, trials=2, epochs=epochs)
    logged_while_down = [
        m for run in runs for m in client.get_metric_history(run.info.run_id, "val_accuracy")
        if down * 1000 <= m.timestamp <= up * 1000
    ]
    assert logged_while_down, "no epoch ended during the outage: the test proved nothing"
    assert sweep.data.metrics["mlflow_retries"] > 0
    assert "MLflow server unreachable" in driver.text
    print(f"\nMEASURED MLflow outage {up - down:.1f} s (stop to healthy again): {len(logged_while_down)} epoch results "
          f"produced meanwhile, buffered, all delivered; {int(sweep.data.metrics['mlflow_retries'])} retried sends; "
          f"driver done {finished - up:.1f} s after the server returned")


def test_driver_killed_then_resumed(cluster, tracking_server, tmp_path, postgres_url):
    trials, epochs = 5, 4
    config = write_sweep(tmp_path, name="cl-resume", search={"trials": trials}, scheduler={"max_epochs": epochs},
                         resources={"cpu": 1, "concurrent": 2}, storage={"optuna": postgres_url})
    driver = run_driver(config, cluster, tracking_server)
    wait_for(lambda: sum(n >= 2 for n in epochs_logged(tracking_server.url, "cl-resume").values()) >= 2, 120,
             "two trials two epochs in")
    os.kill(driver.process.pid, signal.SIGKILL)
    driver.wait(10)
    client, sweep, runs = sweep_runs(tracking_server.url, "cl-resume")
    assert sweep.info.status == "RUNNING" and any(run.info.status == "RUNNING" for run in runs)

    started, started_ms = time.monotonic(), time.time() * 1000
    resume = Driver(tmp_path, "resume", sweep.info.run_id, "--address", cluster.address,
                    "--tracking-uri", tracking_server.url)
    assert resume.wait() == 0, resume.text[-3000:]
    client, sweep, runs = sweep_runs(tracking_server.url, "cl-resume")
    first_epoch_ms = min(m.timestamp for run in runs for m in client.get_metric_history(run.info.run_id, "val_accuracy")
                         if m.timestamp > started_ms)
    print(f"\nMEASURED resume after driver SIGKILL: first epoch logged {(first_epoch_ms - started_ms) / 1000:.1f} s "
          f"after `visionsweep resume` started; the rest of the {trials}-trial sweep took {time.monotonic() - started:.1f} s")
    check_all_closed(client, sweep, runs, trials=trials, epochs=epochs)
    assert sweep.data.metrics["trials_complete"] == trials
    study = optuna.load_study(study_name=sweep.data.tags["visionsweep.study_name"], storage=postgres_url)
    states = [trial.state for trial in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == trials
    assert optuna.trial.TrialState.RUNNING not in states  # a trial proposed just before the kill is closed as FAIL


def test_worker_node_killed_mid_trial(cluster, tracking_server, tmp_path):
    epochs = 10
    # 2-CPU trials on 2-CPU nodes: the two trials start one per node, so one is surely on the worker.
    config = write_sweep(tmp_path, name="cl-node-loss", search={"trials": 2}, scheduler={"max_epochs": epochs},
                         resources={"cpu": 2, "concurrent": 2})
    driver = run_driver(config, cluster, tracking_server)

    def trial_on_worker():
        try:
            client, _, runs = sweep_runs(tracking_server.url, "cl-node-loss")
        except LookupError:
            return None
        on_worker = [r for r in runs if r.data.tags.get("visionsweep.node") == cluster.worker_ip]
        return on_worker and len(steps(client, on_worker[0])) >= 2 and on_worker[0].info.run_id

    run_id = wait_for(trial_on_worker, 120, "a trial two epochs in on the worker node")
    cluster.workers[-1].kill()
    killed = time.monotonic()
    client = MlflowClient(tracking_server.url)
    wait_for(lambda: "visionsweep.restarts" in client.get_run(run_id).data.tags, 60, "Ray to declare the trial failed")
    detected = time.monotonic()
    wait_for(lambda: client.get_run(run_id).data.tags["visionsweep.node"] == cluster.head_ip, 60,
             "the trial to report from the head")
    recovered = time.monotonic()
    assert driver.wait() == 0, driver.text[-3000:]
    print(f"\nMEASURED worker node SIGKILL: trial failure seen by the driver after {detected - killed:.1f} s, "
          f"first epoch from the head's retry after {recovered - killed:.1f} s")

    client, sweep, runs = sweep_runs(tracking_server.url, "cl-node-loss")
    check_all_closed(client, sweep, runs, trials=2, epochs=epochs)  # continued from its checkpoint: no epoch twice
    moved = client.get_run(run_id)
    assert moved.data.tags["visionsweep.restarts"] == "1"
    assert moved.data.tags["visionsweep.nodes"] == f"{cluster.worker_ip},{cluster.head_ip}"
    assert {a.path for a in client.list_artifacts(run_id)} >= {"error-restart-1.txt", "predictions.npz"}
