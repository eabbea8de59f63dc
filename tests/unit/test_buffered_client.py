"""The MLflow write buffer, against a plain fake client that goes away and comes back."""

import tempfile
import threading
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunTag
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

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        if any(tag.key == "bad" for tag in tags):
            raise MlflowException("tag too long", error_code=INVALID_PARAMETER_VALUE)
        if params or tags:
            self._call("log_batch", run_id, tuple(metrics), tuple(params), tuple(tags))
        else:
            self._call("log_batch", run_id, tuple(metrics))

    def log_metric(self, run_id, key, value, timestamp=None, step=None):
        self._call("log_metric", run_id, Metric(key, value, timestamp, step))

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
    monkeypatch.setattr(_buffered, "BATCH_SECONDS", 0.05)


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
    # The five epochs went out as one request, in their order, before the final status.
    assert server.received == [("log_batch", "run", (1, 2, 3, 4, 5)), ("set_terminated", "run", "FINISHED")]
    assert client.retries > 0 and client.longest_backlog >= 5


def test_a_refused_write_is_reported_and_does_not_block_the_rest():
    server = FlakyServer()
    client = BufferedClient(server)
    client.set_tag("run", "bad", "x" * 10)
    client.set_tag("run", "good", "1")  # batched with the bad one, refused with it, then sent on its own
    assert client.close(timeout=5)
    assert server.received == [("set_tag", "run", "good", "1")]
    assert len(client.failed) == 1 and "tag too long" in client.failed[0]


def test_writes_of_a_moment_share_one_request_per_run():
    server = FlakyServer()
    client = BufferedClient(server)
    server.down.set()  # everything below is queued before anything is sent
    client.log_batch("a", params=[Param("lr", "0.1")])
    client.set_tag("a", "node", "10.0.0.1")
    client.log_batch("b", metrics=[Metric("val_loss", 0.9, 1, 1)])
    client.log_metric("a", "val_loss", 0.5, timestamp=2, step=1)
    client.set_tag("a", "node", "10.0.0.2")  # the later value wins, as with two set_tag calls
    client.log_artifacts("a", tempfile.mkdtemp())  # an artifact does not split the run's batch
    client.set_terminated("a", "FINISHED")
    client.log_metric("a", "late", 1.0, timestamp=3, step=2)  # after the final status: stays after it
    assert not client.flush(timeout=0.1)
    server.down.clear()
    assert client.close(timeout=5)
    assert server.received == [
        ("log_batch", "a", (Metric("val_loss", 0.5, 2, 1),), (Param("lr", "0.1"),), (RunTag("node", "10.0.0.2"),)),
        ("log_batch", "b", (Metric("val_loss", 0.9, 1, 1),)),
        ("log_artifacts", "a", []),
        ("set_terminated", "a", "FINISHED"),
        ("log_metric", "a", Metric("late", 1.0, 3, 2)),  # alone: sent as it came
    ]


def test_batches_keep_within_log_batch_limits():
    writes = [("log_param", ("run", f"p{i}", i), {}, None) for i in range(150)]
    writes.append(("log_param", ("run", "p149", "again"), {}, None))  # a key given twice: MLflow refuses one batch
    requests = _buffered.coalesce(writes)
    assert [len(batch.params) for _, batch, _ in requests] == [100, 50, 1]
    name, (run_id,), kwargs = requests[0][0]
    assert (name, run_id, [p.key for p in kwargs["params"]]) == ("log_batch", "run", [f"p{i}" for i in range(100)])
    assert requests[2][0] == ("log_param", ("run", "p149", "again"), {})  # alone: sent as it came


def test_a_write_alone_goes_out_as_it_came():
    assert _buffered.coalesce([("set_tag", ("run", "k", "v"), {}, None)])[0][0] == ("set_tag", ("run", "k", "v"), {})


def test_writes_gather_for_a_moment_but_a_flush_sends_at_once(monkeypatch):
    server = FlakyServer()
    monkeypatch.setattr(_buffered, "BATCH_SECONDS", 60)  # the writer would hold them a minute
    client = BufferedClient(server)
    for epoch in (1, 2, 3):
        client.log_batch("run", metrics=[epoch])
    assert server.received == []  # still gathering
    assert client.flush(timeout=5), "a flush does not wait for the gathering window"
    assert server.received == [("log_batch", "run", (1, 2, 3))]
    client.close()


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
