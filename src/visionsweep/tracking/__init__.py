"""The driver's link to MLflow: a parent run per sweep, a child run per trial, a final status for every run.

Trials never talk to MLflow themselves: Ray ends a trial right after its last report, so anything a trial
logged after that would be lost, and its run would stay RUNNING. The driver sees every ending.
"""

from visionsweep.tracking._buffered import BufferedClient
from visionsweep.tracking._recovery import recover_records, set_aside_lost
from visionsweep.tracking._store import (
    TimedClient,
    connect,
    finish_sweep,
    latest_sweep,
    load_artifact_npz,
    log_bytes,
    log_params,
    start_refit,
    start_sweep,
    sweep_run,
    trial_runs,
    write_ahead_log,
)
from visionsweep.tracking._study import load_study, log_study
from visionsweep.tracking._trial_logger import TrialLogger, TrialRecord

__all__ = [
    "BufferedClient",
    "recover_records",
    "set_aside_lost",
    "TimedClient",
    "TrialLogger",
    "TrialRecord",
    "connect",
    "finish_sweep",
    "latest_sweep",
    "load_artifact_npz",
    "log_bytes",
    "load_study",
    "log_params",
    "log_study",
    "start_refit",
    "start_sweep",
    "sweep_run",
    "trial_runs",
    "write_ahead_log",
]
