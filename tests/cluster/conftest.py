"""Fixtures of the cluster tests: one two-node Ray cluster and one MLflow server (PostgreSQL) per module."""

import pytest
from harness import Cluster

from support.servers import MlflowServer


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory, new_postgres_database):
    with new_postgres_database() as backend:
        server = MlflowServer(backend, tmp_path_factory.mktemp("mlflow"))
        server.start()
        yield server
        server.stop()
