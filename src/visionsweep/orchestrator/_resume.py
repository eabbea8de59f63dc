"""`visionsweep resume SWEEP`: a new driver takes over the sweep of one that died.

Three things are restored, each from where it lives durably: Ray Tune's experiment (trial states,
checkpoints, searcher snapshot) from the checkpoint storage, the Optuna study from its storage, and
the MLflow parent run with its trial runs, matched to Ray trials through the `visionsweep.trial_id` tag.
Interrupted trials continue from their last checkpoint in their own MLflow run.
"""

import os
import tempfile
import time
from pathlib import Path

import yaml

from visionsweep import tracking
from visionsweep.config import SweepConfig, parse_config
from visionsweep.orchestrator._state import SweepState
from visionsweep.record import CONFIG_ARTIFACT, KIND_SWEEP, TAG_CONFIG_FOLDER, TAG_DATA_FINGERPRINT, TAG_KIND
from visionsweep.orchestrator._sweep import SweepResult, drive, load_data
from visionsweep.trainables import load_trainable


def resume_sweep(
    sweep: str, tracking_uri: str, address: str | None = None, verbose: bool = False
) -> tuple[SweepConfig, SweepResult]:
    """Resumes the sweep whose MLflow parent run id is `sweep` (or the latest sweep of the experiment so named)."""
    started = time.monotonic()
    client = tracking.TimedClient(tracking_uri)
    sweep_run_id = find_sweep(client, sweep)
    run = client.get_run(sweep_run_id)
    config = stored_config(client, sweep_run_id, run)
    state = SweepState.from_tags(run.data.tags)
    _, code_folder = load_trainable(config.trainable, config.folder)
    dataset, _, trial_data = load_data(config)
    if dataset.fingerprint() != run.data.tags.get(TAG_DATA_FINGERPRINT):
        raise LookupError(f"sweep {sweep_run_id}: dataset {config.data.dataset!r} changed since the sweep started")

    client.update_run(sweep_run_id, status="RUNNING")
    writer = tracking.BufferedClient(client, config.tracking.batch_seconds)
    logger = tracking.TrialLogger(writer, run.info.experiment_id, sweep_run_id, config, trial_data)
    logger.records = tracking.recover_records(client, sweep_run_id, config.search.metric)
    print(f"sweep run {sweep_run_id} resumed from {state.tune_path}", flush=True)
    return config, drive(config, state, trial_data, client, writer, logger, address, verbose, started=started,
                         resumed=True, code_folder=code_folder)


def stored_config(client, sweep_run_id: str, run=None) -> SweepConfig:
    """The resolved config the sweep stored when it started, with its sweep file's folder (`run`: the sweep run)."""
    run = run or client.get_run(sweep_run_id)
    with tempfile.TemporaryDirectory() as folder:
        stored = yaml.safe_load(Path(client.download_artifacts(sweep_run_id, CONFIG_ARTIFACT, folder)).read_text())
    return parse_config(stored, source=CONFIG_ARTIFACT, folder=run.data.tags.get(TAG_CONFIG_FOLDER) or os.getcwd())


def find_sweep(client, sweep: str) -> str:
    """A sweep run id as given, or the latest sweep of the experiment named `sweep`."""
    try:
        run = client.get_run(sweep)
    except Exception:  # not a run id (MLflow raises its own error for a malformed or unknown id)
        return tracking.latest_sweep(client, sweep)
    if run.data.tags.get(TAG_KIND) != KIND_SWEEP:
        raise LookupError(f"run {sweep} is not a sweep run (tag {TAG_KIND}={run.data.tags.get(TAG_KIND)!r})")
    return sweep
