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

import optuna
import yaml
from ray import tune
from ray.tune.logger import JsonLoggerCallback

from visionsweep import data, tracking
from visionsweep.config import SweepConfig, parse_config
from visionsweep.orchestrator._searcher import TellStoppedTrials
from visionsweep.orchestrator._state import SweepState
from visionsweep.orchestrator._sweep import SweepResult, connect_ray, finish, make_trainable, user_code
from visionsweep.trainables import TrialData, load_trainable


def resume_sweep(
    sweep: str, tracking_uri: str, address: str | None = None, verbose: bool = False
) -> tuple[SweepConfig, SweepResult]:
    """Resumes the sweep whose MLflow parent run id is `sweep` (or the latest sweep of the experiment so named)."""
    started = time.monotonic()
    client = tracking.TimedClient(tracking_uri)
    sweep_run_id = find_sweep(client, sweep)
    run = client.get_run(sweep_run_id)
    with tempfile.TemporaryDirectory() as folder:
        config = parse_config(yaml.safe_load(Path(client.download_artifacts(sweep_run_id, "config.yaml", folder)).read_text()))
    state = SweepState.from_tags(run.data.tags)
    _, code_folder = load_trainable(config.trainable, os.getcwd())
    dataset = data.load(config.data)
    if dataset.fingerprint() != run.data.tags.get("visionsweep.data_fingerprint"):
        raise LookupError(f"sweep {sweep_run_id}: dataset {config.data.dataset!r} changed since the sweep started")
    split = data.make_split(dataset, config.data.val_fraction, config.data.test_fraction, config.data.seed,
                            config.data.folds)
    trial_data = TrialData.of(dataset, split)

    client.update_run(sweep_run_id, status="RUNNING")
    writer = tracking.BufferedClient(client, config.tracking.batch_seconds)
    logger = tracking.TrialLogger(writer, run.info.experiment_id, sweep_run_id, config, trial_data)
    logger.records = tracking.recover_records(client, sweep_run_id, config.search.metric)
    status, study = "FAILED", None
    try:
        connect_ray(address, verbose, user_code(config))
        tuner = tune.Tuner.restore(
            state.tune_path, trainable=make_trainable(config, trial_data, code_folder), resume_errored=True
        )
        searcher = tuner._local_tuner._tune_config.search_alg
        # The callbacks come back unpickled, without their MLflow client or searcher: hand Tune live ones.
        tuner._local_tuner.get_run_config().callbacks = [logger, TellStoppedTrials(searcher), JsonLoggerCallback()]
        study = getattr(searcher, "study", None)  # coordinate search has no Optuna study
        tuner.fit()
        if state.study_storage and study is not None:  # the searcher's copy was unpickled; the storage holds the truth
            study = optuna.load_study(study_name=state.name, storage=state.open_study_storage())
        status = "FINISHED"
        lost = tracking.set_aside_lost(writer, logger.records)
        if lost:
            print(f"{len(lost)} trial run(s) of trials the dead driver never recorded set aside as {tracking.LOST}")
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        result = finish(config, client, writer, logger, sweep_run_id, status, study, started)
    return config, result


def find_sweep(client, sweep: str) -> str:
    """A sweep run id as given, or the latest sweep of the experiment named `sweep`."""
    try:
        run = client.get_run(sweep)
    except Exception:  # not a run id (MLflow raises its own error for a malformed or unknown id)
        return tracking.latest_sweep(client, sweep)
    if run.data.tags.get(tracking.TAG_KIND) != "sweep":
        raise LookupError(f"run {sweep} is not a sweep run (tag {tracking.TAG_KIND}={run.data.tags.get(tracking.TAG_KIND)!r})")
    return sweep
