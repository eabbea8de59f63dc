import contextlib
import hashlib
import io
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import yaml
from mlflow.entities import Metric, Param, RunTag
from alembic.util.exc import CommandError as AlembicError
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import ExclusiveFileLock
from sqlalchemy.exc import SQLAlchemyError

from visionsweep import __version__
from visionsweep.config import SweepConfig, flatten
from visionsweep.data import Dataset, Split
from visionsweep.record import (
    CONFIG_ARTIFACT, KIND_REFIT, KIND_SWEEP, KIND_TRIAL, SPLIT_ARTIFACT, TAG_CONFIG_FOLDER, TAG_DATA_FINGERPRINT,
    TAG_GIT_COMMIT, TAG_KIND, TAG_METRIC, TAG_MODE, TAG_PARENT, TAG_SOURCE_NAME, TAG_VERSION,
)

DATABASES = {"sqlite", "postgresql", "mysql", "mssql"}  # MLflow's database stores, which make their own tables
SCHEMA_WAIT_S = 120  # seconds a first request waits while another process creates a new database's tables
SQLITE_WAIT_S = 5  # seconds to wait for a busy sqlite store before leaving its journal mode as it is
BATCH_PARAMS = 100  # log_batch takes at most 100 params per request
PARAM_CHARS = 6000  # longest param value MLflow stores


class TimedClient:
    """An MlflowClient that adds up the seconds spent in its calls (the tracking overhead of a sweep)."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self.seconds = 0.0
        # The Model Registry lives in the same store; MLflow would otherwise take the process-wide default.
        self._client = open_store(tracking_uri, lambda: MlflowClient(tracking_uri, registry_uri=tracking_uri))

    def __getattr__(self, name):
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


def connect(tracking_uri: str, experiment: str) -> tuple[TimedClient, str]:
    """A client and the id of `experiment`, created if new (by this process or, at the same moment, another).

    With a sqlite store, artifacts go beside the database (not to ./mlruns of whatever folder the
    command ran in), so the UI finds them from anywhere.
    """
    client = TimedClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found:
        return client, found.experiment_id
    artifact_location = None
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        database = Path(tracking_uri.removeprefix("sqlite:///")).absolute()
        artifact_location = (database.parent / "mlartifacts").as_uri()
    try:
        return client, client.create_experiment(experiment, artifact_location=artifact_location)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client, client.get_experiment_by_name(experiment).experiment_id  # another sweep made it first


def open_store(tracking_uri: str, open_client):
    """`open_client()`, which opens the store. On a database that is still empty, MLflow creates its tables
    and migrates them then, unguarded: a second process opening the same new database at the same moment
    fails in the middle of that (alembic: "table ... already exists"). So on one machine opening waits for a
    lock of that database's own; a process on another machine (PostgreSQL) learns that the tables are being
    made from a failed attempt, and tries again until they are ready (up to SCHEMA_WAIT_S)."""
    if urlparse(tracking_uri).scheme.split("+")[0] not in DATABASES:
        return open_client()
    digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    deadline = time.monotonic() + SCHEMA_WAIT_S
    while True:
        try:
            with ExclusiveFileLock(str(Path(tempfile.gettempdir(), f"visionsweep-schema-{digest}.lock"))):
                client = open_client()
                if urlparse(tracking_uri).scheme == "sqlite":
                    write_ahead_log(Path(tracking_uri.removeprefix("sqlite:///")))
                return client
        except (SQLAlchemyError, AlembicError, MlflowException) as err:
            if time.monotonic() > deadline or (isinstance(err, MlflowException) and "schema" not in str(err)):
                raise
            time.sleep(1.0)


def write_ahead_log(database: Path, wait_s: float = SQLITE_WAIT_S) -> None:
    """Puts a sqlite store in write-ahead-log mode, which the file keeps: a write then costs one sync instead of
    a rollback journal's several (MLflow's create_run, log_batch and set_terminated take 25-45% less time), and
    the UI's reads no longer wait for a sweep's writes. Best effort: a store busy for `wait_s` stays as it is.
    (Like any sqlite store in WAL mode, it belongs on a local disk, not a network file system.)"""
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=wait_s)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        pass


def log_params(client, run_id: str, params: dict) -> None:
    items = [Param(k, str(v)[:PARAM_CHARS]) for k, v in params.items()]
    for start in range(0, len(items), BATCH_PARAMS):
        client.log_batch(run_id, params=items[start : start + BATCH_PARAMS])


def log_bytes(client, run_id: str, name: str, payload: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, name).write_bytes(payload)
        client.log_artifact(run_id, str(Path(folder, name)))


def load_artifact_npz(client, run_id: str, name: str) -> dict[str, np.ndarray]:
    """An .npz artifact read back without pickle."""
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(run_id, name, folder)
        with np.load(path, allow_pickle=False) as arrays:
            return dict(arrays)


def start_sweep(client, experiment_id: str, config: SweepConfig, dataset: Dataset, split: Split) -> str:
    """Creates the sweep's parent run: resolved config, the split with its labels, data fingerprint, code version."""
    tags = {
        TAG_KIND: KIND_SWEEP,
        TAG_VERSION: __version__,
        TAG_DATA_FINGERPRINT: dataset.fingerprint(),
        TAG_METRIC: config.search.metric,
        TAG_MODE: config.search.mode,
        TAG_SOURCE_NAME: "visionsweep run",
    }
    if config.folder:
        tags[TAG_CONFIG_FOLDER] = config.folder
    commit = _git_commit()
    if commit:
        tags[TAG_GIT_COMMIT] = commit
    run = client.create_run(experiment_id, run_name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}", tags=tags)
    run_id = run.info.run_id
    log_params(client, run_id, flatten(config))
    client.log_text(run_id, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), CONFIG_ARTIFACT)
    arrays = {part: getattr(split, part) for part in ("train", "val", "test")}
    arrays.update(val_labels=dataset.labels[split.val], test_labels=dataset.labels[split.test],
                  classes=np.array(dataset.classes))
    if split.folds is not None:  # the ensemble fits on the out-of-fold predictions of every development row
        arrays.update(folds=split.folds, development_labels=dataset.labels[split.development])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    log_bytes(client, run_id, SPLIT_ARTIFACT, buffer.getvalue())
    return run_id


def start_refit(client, sweep, config: SweepConfig) -> str:
    """Creates a refit run under the `sweep` run (a Run): the refit's config, and the sweep's split and the tags
    that rank its trials, so that its trial runs are ensembled as a sweep's are."""
    tags = {key: sweep.data.tags[key] for key in (TAG_DATA_FINGERPRINT, TAG_METRIC, TAG_MODE) if key in sweep.data.tags}
    tags.update({TAG_KIND: KIND_REFIT, TAG_PARENT: sweep.info.run_id, TAG_VERSION: __version__,
                 TAG_SOURCE_NAME: "visionsweep ensemble --refit"})
    run = client.create_run(sweep.info.experiment_id, run_name=f"refit-{time.strftime('%Y%m%d-%H%M%S')}", tags=tags)
    run_id = run.info.run_id
    log_params(client, run_id, flatten(config))
    client.log_text(run_id, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), CONFIG_ARTIFACT)
    with tempfile.TemporaryDirectory() as folder:
        client.log_artifact(run_id, client.download_artifacts(sweep.info.run_id, SPLIT_ARTIFACT, folder))
    return run_id


def finish_sweep(client, run_id: str, status: str, metrics: dict[str, float]) -> None:
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    client.set_terminated(run_id, status)


def sweep_run(client, run_id: str):
    """The sweep's parent run. LookupError, saying what to give instead, when `run_id` names no run, or a trial's
    or an ensemble's run (their sweep is named), or a run visionsweep did not write."""
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise LookupError(f"no run {run_id} at {client.tracking_uri}; give a sweep's run id (printed when it "
                          "starts, and in the MLflow UI) or --experiment NAME for its latest sweep") from None
    kind = run.data.tags.get(TAG_KIND)
    if kind == "sweep":
        return run
    parent = run.data.tags.get(TAG_PARENT)
    if kind and parent:
        raise LookupError(f"run {run_id} is a {kind}, not a sweep; its sweep: --sweep {parent}")
    raise LookupError(f"run {run_id} is not a visionsweep sweep run (its tag {TAG_KIND} is {kind!r})")


def latest_sweep(client, experiment: str) -> str:
    """The run id of the experiment's most recent sweep."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"no MLflow experiment named {experiment!r} at {client.tracking_uri}")
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = '{KIND_SWEEP}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise LookupError(f"experiment {experiment!r} has no sweep run")
    return runs[0].info.run_id


def trial_runs(client, sweep_run_id: str, order_by: list[str] | None = None):
    """All trial runs of a sweep (every page)."""
    sweep = client.get_run(sweep_run_id)
    query = f"tags.`{TAG_PARENT}` = '{sweep_run_id}' and tags.`{TAG_KIND}` = '{KIND_TRIAL}'"
    runs, token = [], None
    while True:
        page = client.search_runs(
            [sweep.info.experiment_id], filter_string=query, order_by=order_by, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
