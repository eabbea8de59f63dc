"""MLflow writes that survive a tracking-server outage: queued in order, sent by one thread, retried until they land.

A sweep on a cluster runs for hours; the MLflow server on the head may restart (an upgrade, a crash, the
database failing over). Blocking the Tune loop on it would stall every trial, and dropping the write
would lose an epoch's metrics. So writes go into a FIFO that one background thread drains: while the
server is away the backlog grows in memory (a few hundred bytes per result) and the sweep goes on;
when it answers again, the backlog goes out in its original order (an epoch's metrics before the run's
final status). Calls that return something (create_run, get_run, ...) are made at once, retried the same way.

Each request costs about as much as the next whatever it carries (5-10 ms on sqlite, most of it the
store's own bookkeeping, docs/stack.md), so the writer lets writes gather for up to `batch_seconds` and sends
each run's metrics, params and tags of that window as one `log_batch`: a trial's params, node tags and
first epochs go out together. A run's final status still goes out after everything queued before it.
"""

import collections
import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from visionsweep.config import TrackingConfig

log = logging.getLogger(__name__)

# Calls whose result nobody waits for: they can be sent later, in order.
WRITES = frozenset({"log_batch", "log_metric", "log_param", "set_tag", "set_terminated", "log_text", "log_dict",
                    "log_artifact", "log_artifacts"})
# Writes that can share one log_batch request with the run's other writes of the same moment.
BATCHABLE = frozenset({"log_batch", "log_metric", "log_param", "set_tag"})
# How long a write waits for others to share its request, unless a sweep says (tracking.batch_seconds); flush()
# does not wait. Epochs of a few seconds then share one request per run: on the logging benchmark's sweep a
# 1-s window gave about one request per epoch and 3.7% of the wall time in MLflow calls, 5 s gave 1.9%.
BATCH_SECONDS = TrackingConfig().batch_seconds
# log_batch's own limits (docs/stack.md), and a byte budget well inside its 1 MB per request.
BATCH_LIMITS = {"metrics": 1000, "params": 100, "tags": 100}
BATCH_BYTES = 500_000
FIRST_BACKOFF = 0.25  # seconds before the first retry; doubles up to MAX_BACKOFF
MAX_BACKOFF = 4.0  # seconds: how late a restarted server may learn of the backlog
FLUSH_TIMEOUT = 600.0  # seconds a finishing sweep waits for an absent server before giving up (and saying so)


def is_transient(err: Exception) -> bool:
    """A server that is away or overloaded (connection refused, timeout, 5xx); not a bad request (4xx)."""
    return isinstance(err, MlflowException) and err.get_http_status_code() >= 500


def retry(call, *, stop: threading.Event | None = None, on_retry=None):
    """Calls `call()` until it does not raise a transient error, with capped exponential backoff."""
    wait = FIRST_BACKOFF
    while True:
        try:
            return call()
        except Exception as err:
            if not is_transient(err) or (stop is not None and stop.is_set()):
                raise
            if on_retry:
                on_retry(err, wait)
            time.sleep(wait)
            wait = min(2 * wait, MAX_BACKOFF)


@dataclasses.dataclass
class Batch:
    """One run's metrics, params and tags that go out as a single log_batch (later tags win, as set_tag would)."""

    run_id: str
    metrics: list = dataclasses.field(default_factory=list)
    params: dict = dataclasses.field(default_factory=dict)
    tags: dict = dataclasses.field(default_factory=dict)
    parts: list = dataclasses.field(default_factory=list)  # the writes it holds, to send one by one if it is refused
    size: int = 0  # bytes, roughly

    def add(self, name: str, args: tuple, kwargs: dict) -> bool:
        """Takes the write in, or returns False (and takes nothing) when it would break log_batch's limits."""
        metrics, params, tags = _as_entities(name, args, kwargs)
        size = 100 * len(metrics) + sum(len(e.key) + len(str(e.value)) for e in (*params, *tags))
        if self.parts and (  # a first write goes as it came, and MLflow judges it
            any(p.key in self.params for p in params)  # log_batch refuses a param key given twice
            or len(self.metrics) + len(metrics) > BATCH_LIMITS["metrics"]
            or len(self.params) + len(params) > BATCH_LIMITS["params"]
            or len(self.tags.keys() | {t.key for t in tags}) > BATCH_LIMITS["tags"]
            or self.size + size > BATCH_BYTES
        ):
            return False
        self.metrics.extend(metrics)
        self.params.update((p.key, p) for p in params)
        self.tags.update((t.key, t) for t in tags)
        self.parts.append((name, args, kwargs))
        self.size += size
        return True

    def request(self) -> tuple[str, tuple, dict]:
        if len(self.parts) == 1:
            return self.parts[0]
        return "log_batch", (self.run_id,), {
            "metrics": self.metrics, "params": list(self.params.values()), "tags": list(self.tags.values())}


def _as_entities(name: str, args: tuple, kwargs: dict) -> tuple[list, list, list]:
    """A batchable write's (metrics, params, tags), from the arguments it was called with."""
    call = dict(zip(_SIGNATURES[name], args[1:]), **kwargs)
    if name == "log_batch":
        return list(call.get("metrics", ())), list(call.get("params", ())), list(call.get("tags", ()))
    if name == "set_tag":
        return [], [], [RunTag(call["key"], str(call["value"]))]
    if name == "log_param":
        return [], [Param(call["key"], str(call["value"]))], []
    timestamp = call.get("timestamp") or int(time.time() * 1000)
    return [Metric(call["key"], float(call["value"]), timestamp, call.get("step") or 0)], [], []


_SIGNATURES = {  # positional arguments after run_id, as MlflowClient takes them
    "log_batch": ("metrics", "params", "tags"),
    "set_tag": ("key", "value"),
    "log_param": ("key", "value"),
    "log_metric": ("key", "value", "timestamp", "step"),
}


def coalesce(writes: list[tuple]) -> list[tuple]:
    """The queued writes as fewer requests, in order, except that each run's batchable writes join the first
    Batch of that run in the list. Only the run's final status closes its Batch: what comes after it goes
    into a new one. (An artifact needs no place among metrics and tags; the UI must not show a finished
    run whose metrics are still to come.)

    `writes`: (name, args, kwargs, cleanup); returns ((name, args, kwargs), Batch | None, cleanup).
    """
    entries, open_batches = [], {}
    for name, args, kwargs, cleanup in writes:
        run_id = args[0] if args else kwargs["run_id"]
        if name in BATCHABLE:
            batch = open_batches.get(run_id)
            if batch is None or not batch.add(name, args, kwargs):
                open_batches[run_id] = batch = Batch(run_id)
                batch.add(name, args, kwargs)
                entries.append(batch)
            continue
        if name == "set_terminated":
            open_batches.pop(run_id, None)
        entries.append(((name, args, kwargs), None, cleanup))
    # A Batch may grow until the last write: its request is made at the end.
    return [(entry.request(), entry, None) if isinstance(entry, Batch) else entry for entry in entries]


class BufferedClient:
    """Wraps an MlflowClient-like object; `flush()` waits until every queued write reached the server."""

    def __init__(self, client, batch_seconds: float | None = None):
        # Our loop retries forever with a short cap; MLflow's own retries would hold one call for up to 2 minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        self._client = client
        self.batch_seconds = BATCH_SECONDS if batch_seconds is None else batch_seconds
        self._queue = collections.deque()
        self._changed = threading.Condition()
        self._sending = 0  # writes taken from the queue and not yet sent
        self._flushing = 0  # callers waiting in flush(): the writer sends at once, without gathering
        self._stop = threading.Event()
        self._spool = Path(tempfile.mkdtemp(prefix="visionsweep-mlflow-spool-"))
        self.retries = 0  # failed sends that were retried
        self.longest_backlog = 0  # writes waiting at once, at most
        self.outage_seconds = 0.0  # time spent waiting for the server
        # Time callers were held: calls that return something, and flush(). A timed client's calls made
        # before this writer existed were all waited for.
        self.waited_seconds = getattr(client, "seconds", 0.0)
        self.failed: list[str] = []  # writes the server refused (4xx): reported, not retried
        self._thread = threading.Thread(target=self._drain, name="mlflow-writer", daemon=True)
        self._thread.start()

    def __getattr__(self, name):
        method = getattr(self._client, name)
        if name in WRITES:
            return lambda *args, **kwargs: self._enqueue(name, args, kwargs)
        if not callable(method):
            return method
        return lambda *args, **kwargs: self._waited(retry, lambda: method(*args, **kwargs), on_retry=self._count_retry)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        # The caller's file may be gone by the time the server answers (a checkpoint's temporary folder).
        copy = Path(tempfile.mkdtemp(dir=self._spool), Path(local_path).name)
        shutil.copy2(local_path, copy)
        self._enqueue("log_artifact", (run_id, str(copy), artifact_path), {}, cleanup=copy.parent)

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        copy = Path(tempfile.mkdtemp(dir=self._spool), "upload")
        shutil.copytree(local_dir, copy)
        self._enqueue("log_artifacts", (run_id, str(copy), artifact_path), {}, cleanup=copy.parent)

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Waits until every queued write is sent; False (and a warning) if the server stayed away past `timeout`."""
        return self._waited(self._flush, timeout)

    def _waited(self, call, *args, **kwargs):
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            self.waited_seconds += time.perf_counter() - started

    def _flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            self._flushing += 1
            self._changed.notify_all()
            try:
                while self.backlog:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        log.warning("MLflow: %d writes still unsent after %.0f s; they are lost", self.backlog, timeout)
                        return False
                    self._changed.wait(left)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        sent = self.flush(timeout)
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(5)
        shutil.rmtree(self._spool, ignore_errors=True)
        return sent

    @property
    def backlog(self) -> int:
        return len(self._queue) + self._sending

    def _enqueue(self, name, args, kwargs, cleanup: Path | None = None) -> None:
        with self._changed:
            self._queue.append((name, args, kwargs, cleanup))
            self.longest_backlog = max(self.longest_backlog, len(self._queue))
            self._changed.notify_all()

    def _count_retry(self, err, wait) -> None:
        if self.retries == 0 or wait == FIRST_BACKOFF:
            log.warning("MLflow server unreachable (%s); retrying, writes are kept", str(err)[:200])
        self.retries += 1
        self.outage_seconds += wait

    def _drain(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._stop.is_set():
                    self._changed.wait()
                if not self._queue:
                    return
                gathered_until = time.monotonic() + self.batch_seconds  # the writes of the next moment join these
                while not (self._flushing or self._stop.is_set()) and (left := gathered_until - time.monotonic()) > 0:
                    self._changed.wait(left)
                writes = list(self._queue)
                self._queue.clear()
                self._sending = len(writes)
            try:
                for request, batch, cleanup in coalesce(writes):
                    try:
                        self._send(request, batch)
                    finally:
                        if cleanup:
                            shutil.rmtree(cleanup, ignore_errors=True)
            finally:
                with self._changed:
                    self._sending = 0
                    self._changed.notify_all()

    def _send(self, request: tuple, batch: Batch | None = None) -> None:
        name, args, kwargs = request
        method = getattr(self._client, name)
        try:
            retry(lambda: method(*args, **kwargs), stop=self._stop, on_retry=self._count_retry)
        except Exception as err:  # a refused write must not stop the ones behind it
            if batch is not None and len(batch.parts) > 1:  # nor take the writes it was batched with
                for part in batch.parts:
                    self._send(part)
                return
            self.failed.append(f"{name}{args[:1]}: {err}")
            log.warning("MLflow refused %s for run %s: %s", name, args[0] if args else "?", err)
