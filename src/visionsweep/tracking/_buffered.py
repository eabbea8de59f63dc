"""MLflow writes that survive a tracking-server outage: queued in order, sent by one thread, retried until they land.

A sweep on a cluster runs for hours; the MLflow server on the head may restart (an upgrade, a crash, the
database failing over). Blocking the Tune loop on it would stall every trial, and dropping the write
would lose an epoch's metrics. So writes go into a FIFO that one background thread drains: while the
server is away the backlog grows in memory (a few hundred bytes per result) and the sweep goes on;
when it answers again, the backlog goes out in its original order (an epoch's metrics before the run's
final status). Calls that return something (create_run, get_run, ...) are made at once, retried the same way.
"""

import collections
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)

# Calls whose result nobody waits for: they can be sent later, in order.
WRITES = frozenset({"log_batch", "log_metric", "log_param", "set_tag", "set_terminated", "log_text", "log_dict",
                    "log_artifact", "log_artifacts"})
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


class BufferedClient:
    """Wraps an MlflowClient-like object; `flush()` waits until every queued write reached the server."""

    def __init__(self, client):
        # Our loop retries forever with a short cap; MLflow's own retries would hold one call for up to 2 minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        self._client = client
        self._queue = collections.deque()
        self._changed = threading.Condition()
        self._busy = False  # a write taken from the queue is being sent
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
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("MLflow: %d writes still unsent after %.0f s; they are lost", len(self._queue), timeout)
                    return False
                self._changed.wait(left)
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
        return len(self._queue) + self._busy

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
                name, args, kwargs, cleanup = self._queue.popleft()
                self._busy = True
            method = getattr(self._client, name)
            try:
                retry(lambda: method(*args, **kwargs), stop=self._stop, on_retry=self._count_retry)
            except Exception as err:  # a refused write must not stop the ones behind it
                self.failed.append(f"{name}{args[:1]}: {err}")
                log.warning("MLflow refused %s for run %s: %s", name, args[0] if args else "?", err)
            finally:
                if cleanup:
                    shutil.rmtree(cleanup, ignore_errors=True)
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
