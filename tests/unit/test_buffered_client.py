"""The MLflow write buffer, against a plain fake client that goes away and comes back."""

import tempfile
import threading
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from visionsweep.tracking import BufferedClient
from visionsweep.tracking import _buffered


class FlakyServer:
    """Refuses every call while `down` is set, like a stopped tracking server (HTTP 500 from the client)."""

    def __init__(self):
        self.down = threading.Event()
        self.received = []

    def _call(self, name, *args):
        if self.down.is_set():
            raise MlflowException("API request to http://127.0.0.1:1/api failed with exception Connection refused")
        self.received.append((name, *args))

    def log_batch(self, run_id, metrics=()):
        self._call("log_batch", run_id, tuple(metrics))

    def set_terminated(self, run_id, status=None):
        self._call("set_terminated", run_id, status)

    def set_tag(self, run_id, key, value):
        if key == "bad":
            raise MlflowException("tag too long", error_code=INVALID_PARAMETER_VALUE)
        self._call("set_tag", run_id, key, value)

    def log_artifacts(self, run_id, local_dir, artifact_path=None):
        self._call("log_artifacts", run_id, sorted(p.name for p in Path(local_dir).iterdir()))

    def get_run(self, run_id):
        self._call("get_run", run_id)
        return run_id


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(_buffered, "FIRST_BACKOFF", 0.01)
    monkeypatch.setattr(_buffered, "MAX_BACKOFF", 0.02)


def test_writes_made_during_an_outage_arrive_in_order_afterwards():
    server = FlakyServer()
    client = BufferedClient(server)
    server.down.set()
    for epoch in range(1, 6):
        client.log_batch("run", metrics=[epoch])
    client.set_terminated("run", "FINISHED")
    assert not client.flush(timeout=0.2), "nothing can be sent while the server is down"
    assert server.received == []
    server.down.clear()
    assert client.close(timeout=5)
    assert server.received == [("log_batch", "run", (e,)) for e in range(1, 6)] + [("set_terminated", "run", "FINISHED")]
    assert client.retries > 0 and client.longest_backlog >= 5


def test_a_refused_write_is_reported_and_does_not_block_the_rest():
    server = FlakyServer()
    client = BufferedClient(server)
    client.set_tag("run", "bad", "x" * 10)
    client.set_tag("run", "good", "1")
    assert client.close(timeout=5)
    assert server.received == [("set_tag", "run", "good", "1")]
    assert len(client.failed) == 1 and "tag too long" in client.failed[0]


def test_calls_with_a_result_wait_for_the_server():
    server = FlakyServer()
    client = BufferedClient(server)
    server.down.set()
    threading.Timer(0.1, server.down.clear).start()
    assert client.get_run("abc") == "abc"
    client.close()


def test_transient_means_server_side():
    assert _buffered.is_transient(MlflowException("API request to x failed with exception refused"))
    assert not _buffered.is_transient(MlflowException("bad", error_code=INVALID_PARAMETER_VALUE))
    assert not _buffered.is_transient(ValueError("a bug"))


def test_artifacts_are_copied_so_the_callers_folder_may_vanish():
    server = FlakyServer()
    client = BufferedClient(server)
    server.down.set()
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "predictions.npz").write_bytes(b"x")
        client.log_artifacts("run", folder)
    server.down.clear()
    assert client.close(timeout=5)
    assert server.received == [("log_artifacts", "run", ["predictions.npz"])]


def test_callers_wait_for_answers_and_flushes_but_not_for_writes():
    server = FlakyServer()
    server.seconds = 0.5  # a timed client's earlier calls, made before the writer existed, were waited for
    client = BufferedClient(server)
    assert client.waited_seconds == 0.5
    server.down.set()  # writes pile up; the caller is not held
    client.log_batch("run", metrics=[1])
    assert client.waited_seconds < 0.5 + 0.01
    threading.Timer(0.1, server.down.clear).start()
    assert client.get_run("run") == "run"  # retried until the server is back: the caller waits
    assert client.flush(timeout=5)
    assert client.waited_seconds >= 0.5 + 0.1
    client.close()
