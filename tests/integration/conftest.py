import os

import pytest
import ray

from support.servers import LOCAL_RAY, MlflowServer
from support.stores import sqlite_store


@pytest.fixture(scope="session")
def local_ray():
    """One real local Ray for the session (ray.init costs 3-10 s). Tests that run their own cluster don't use it."""
    ray.init(**LOCAL_RAY)
    yield
    ray.shutdown()


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 (sqlite backend, proxied artifacts), stopped afterwards."""
    server = MlflowServer(f"sqlite:///{tmp_path}/server.db", tmp_path)
    server.start()  # MlflowServer waits up to 120 s: a busy 2-core machine starts it in 5-60
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def reported_sweep(local_ray, tmp_path_factory):
    """A small digits sweep run, ensembled and reported through the CLI, as a person would.

    Shared by the report test and the browser test: one sweep (~20 s) for both.
    """
    import contextlib
    import io
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from visionsweep import tracking
    from visionsweep.cli import main

    folder = tmp_path_factory.mktemp("reported")
    uri = sqlite_store(folder)
    config = folder / "sweep.yaml"
    config.write_text(
        "name: it-report\n"
        "space: {lr: {loguniform: [0.01, 0.3]}, channels: {categorical: [8, 16]}, dropout: {uniform: [0.0, 0.3]}}\n"
        "search: {sampler: random, trials: 8, seed: 3}\n"
        "scheduler: {max_epochs: 4, grace_period: 1, reduction_factor: 2}\n"
    )
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(["run", str(config), "--tracking-uri", uri, "--storage-path", str(folder / "ray")]) == 0
        assert main(["ensemble", "--experiment", "it-report", "--tracking-uri", uri, "--top-k", "1", "3", "100%"]) == 0
        assert main(["report", "--experiment", "it-report", "--tracking-uri", uri,
                     "--output", str(folder / "report.html")]) == 0
    client = MlflowClient(uri)
    return SimpleNamespace(
        uri=uri, folder=folder, client=client, output=output.getvalue(), report=folder / "report.html",
        experiment_id=client.get_experiment_by_name("it-report").experiment_id,
        sweep_run_id=tracking.latest_sweep(client, "it-report"),
    )
