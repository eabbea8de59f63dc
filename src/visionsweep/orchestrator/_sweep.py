import os
import secrets
import time
import traceback
from dataclasses import dataclass

import optuna
import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from visionsweep import data, models, tracking
from visionsweep.config import ConfigError, SweepConfig
from visionsweep.orchestrator._interrupt import Interrupt
from visionsweep.orchestrator._searcher import CoordinateSearch, StudySearch, TellStoppedTrials, make_sampler
from visionsweep.orchestrator._state import SweepState, close_abandoned_trials
from visionsweep.orchestrator.progress import SweepProgress
from visionsweep.outcome import FAILURE, Outcome
from visionsweep.record import (
    BAD_IMAGES_ARTIFACT, DATA_SUMMARY_ARTIFACT, KIND_LOST, PARAM_BAD_IMAGES, TAG_NEVER_PREDICTED, best_metric,
    trials_metric,
)
from visionsweep.search_spaces import CoordinateWalk, DefineByRun
from visionsweep.trainables import TrialData, load_trainable, run_trial

# Quiet Ray: no CSV/TensorBoard loggers (JSON only, for Tune's ResultGrid), no snapshot warning. A failed
# trial's last result carries its error and no metric (outcome.FAILURE): Tune must not take that for a mistake.
RAY_ENVIRONMENT = {
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",  # Ctrl-C is the sweep's to tell (_interrupt.py)
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
}


@dataclass
class SweepResult:
    experiment: str
    sweep_run_id: str
    tracking_uri: str
    status: str  # the parent run's final status
    records: list  # tracking.TrialRecord, one per trial
    study: optuna.Study | None
    wall_seconds: float
    mlflow_seconds: float  # spent in MLflow calls on the driver, most of them by the background writer
    mlflow_wait_seconds: float = 0.0  # of which the sweep waited for: calls that return something, flushes

    def count(self, outcome: Outcome) -> int:
        return sum(r.outcome is outcome for r in self.records)

    def best(self, mode: str):
        scored = [r for r in self.records if r.best_val is not None]
        if not scored:
            return None
        return (max if mode == "max" else min)(scored, key=lambda r: r.best_val)


def run_sweep(
    config: SweepConfig, tracking_uri: str, storage_path: str | None = None, address: str | None = None,
    verbose: bool = False, callbacks: list[tune.Callback] = (),
) -> SweepResult:
    """Runs one sweep to the end. Every MLflow run it opened has a final status when this returns or raises.

    `callbacks`: more Ray Tune callbacks on the driver, after the MLflow trial logger (the benchmarks time
    Ray's stock MLflow logger and record each result's order this way).
    """
    started = time.monotonic()
    _, code_folder = load_trainable(config.trainable, config.folder)  # a ConfigError now, before Ray starts
    dataset, split, trial_data = load_data(config)
    client, experiment_id = tracking.connect(tracking_uri, config.name)
    writer = tracking.BufferedClient(client, config.tracking.batch_seconds)
    sweep_run_id = tracking.start_sweep(writer, experiment_id, config, dataset, split)
    state = SweepState.create(config, sweep_run_id, storage_path)
    for key, value in state.tags().items():
        writer.set_tag(sweep_run_id, key, value)
    log_dataset_report(writer, sweep_run_id, dataset)
    logger = tracking.TrialLogger(writer, experiment_id, sweep_run_id, config, trial_data)
    print(f"sweep run {sweep_run_id}; if this driver dies: visionsweep resume {sweep_run_id}", flush=True)
    return drive(config, state, trial_data, client, writer, logger, address, verbose, callbacks, started,
                 code_folder=code_folder)


def load_data(config: SweepConfig) -> tuple[data.Dataset, data.Split, TrialData]:
    """The sweep's dataset, decoded once, its split (the same rows each time for the same data and seed), and
    what the trials get of them."""
    dataset = data.load(config.data)
    split = data.make_split(dataset, config.data.val_fraction, config.data.test_fraction, config.data.seed,
                            config.data.folds)
    trial_data = TrialData.of(dataset, split)
    config.check_task(trial_data.task)  # known only now that the data says whether it is multi-label
    return dataset, split, trial_data


def drive(
    config: SweepConfig, state: SweepState, trial_data: TrialData, client, writer, logger, address: str | None,
    verbose: bool, callbacks=(), started: float | None = None, resumed: bool = False, code_folder: str | None = None,
    searcher=None,
) -> SweepResult:
    """Runs Ray Tune over the sweep until it is done, for `run` and `resume` alike, and closes it in MLflow.

    `resumed`: Tune's experiment at `state.tune_path` continues (interrupted and errored trials from their last
    checkpoints, the searcher from its snapshot); `logger` holds the trial records recovered from MLflow.
    `searcher`: what proposes the trials (default: the sweep's own search, make_searcher).
    """
    started = time.monotonic() if started is None else started
    searcher = searcher or make_searcher(config, state)
    # With --verbose, Ray's own tables take the terminal: progress then goes out as plain lines.
    progress = SweepProgress(
        config.search.trials, config.search.metric, config.search.mode, config.scheduler.max_epochs,
        terminal=False if verbose else None,
    )
    for record in logger.records.values():
        if record.outcome is not None:
            progress.count_earlier(record.outcome, record.best_val, record.trial_id)
    status = "FAILED"
    phases = {}  # seconds: startup (data, MLflow, Ray) until Tune starts, then Tune itself
    interrupt = logger.interrupt = Interrupt()
    try:
        with interrupt.catching():
            # A training function of your own builds its model in its trials, from its own package (which
            # travels with it): the builder it names is for serving, on this driver.
            connect_ray(address, verbose, [] if config.trainable else user_code(config))
            if resumed and not state.has_tune_experiment():
                raise LookupError(f"no Ray Tune experiment to resume at {state.tune_path}")
            arguments = tune_arguments(config, make_trainable(config, trial_data, code_folder), searcher,
                                       [logger, progress, *callbacks], state, verbose, interrupt)
            phases["startup_seconds"] = time.monotonic() - started
            # Trials that errored (their process or node died with the driver) continue from their checkpoints too.
            tune.run(**arguments, resume_config=tune.ResumeConfig(errored=tune.ResumeConfig.ResumeType.RESUME)
                     if resumed else None)
        phases["tune_seconds"] = time.monotonic() - started - phases["startup_seconds"]
        status = "KILLED" if interrupt.interrupted else "FINISHED"
        lost = tracking.set_aside_lost(writer, logger.records) if resumed and status == "FINISHED" else []
        if lost:
            print(f"{len(lost)} trial run(s) of trials the dead driver never recorded set aside as {KIND_LOST}")
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        progress.close()
        study = getattr(searcher, "study", None)  # coordinate search has no Optuna study
        result = finish(config, client, writer, logger, logger.parent_run_id, status, study, started, phases)
    return result


def make_searcher(config: SweepConfig, state: SweepState):
    if config.search.strategy == "coordinate":
        walk = CoordinateWalk(config.search.values, config.search.order, config.search.mode, config.fixed_values())
        return CoordinateSearch(walk, config.search.metric, config.search.mode)
    return StudySearch(
        space=DefineByRun(config.space, config.fixed_values()),
        metric=config.search.metric,
        mode=config.search.mode,
        sampler=make_sampler(config, config.resources.concurrent),
        max_epochs=config.scheduler.max_epochs,
        study_name=state.name,
        storage=state.open_study_storage(),
    )


def connect_ray(address: str | None, verbose: bool, code: list[models.UserCode] = ()) -> None:
    """Joins the cluster at `address` (or $RAY_ADDRESS: a Ray job's driver), else starts a Ray of this run's own,
    with the user's model code shipped to every worker (Ray's py_modules).

    A Ray the caller started already must have that code itself: checked here, before any trial starts.
    """
    os.environ.update(RAY_ENVIRONMENT)
    units = sorted({str(c.unit) for c in code})
    if not ray.is_initialized():
        if address is None and not os.environ.get("RAY_ADDRESS"):
            address = "local"  # not a Ray that someone else started on this machine: it holds another token
            local_ray_auth()
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose, configure_logging=verbose,
                 runtime_env={"py_modules": units} if units else None)
        return
    modules = sorted({c.import_path.partition(":")[0] for c in code})
    if modules and (missing := ray.get(_unimportable.remote(modules))):
        raise ConfigError(
            f"Ray's workers cannot import {', '.join(missing)}: this Ray was started without your model's code. "
            f"Start it with ray.init(runtime_env={{'py_modules': {units}}}), or let visionsweep start it"
        )


def user_code(config: SweepConfig) -> list[models.UserCode]:
    """The code of the sweep's models given by import path that is not an installed package: Ray ships it."""
    names = {*config.model_choices, *config.search.values.get("model", [])}
    return [code for name in sorted(names) if models.is_import_path(name)
            and (code := models.user_code(name)).unit is not None]


@ray.remote(num_cpus=0)
def _unimportable(modules: list[str]) -> list[str]:
    import importlib.util

    def importable(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # its parent package is missing
            return False

    return [name for name in modules if not importable(name)]


def local_ray_auth(environ=os.environ) -> None:
    """Token auth for a Ray this process starts. Ray 2.60 listens on every interface (no setting binds it to
    loopback only), so anyone who reaches the machine reaches its ports: with auth on, only holders of the
    token get in. The token is this run's own, handed to the Ray processes it starts through their
    environment (readable by this user only) and never written to disk; a token already set is kept."""
    if environ.get("RAY_AUTH_MODE") != "token":
        # Unset, Ray turns token auth on for the new Ray, in this process too (its settings are read when Ray is
        # imported, so setting "token" here would come too late for this process).
        environ.pop("RAY_AUTH_MODE", None)
    if not environ.get("RAY_AUTH_TOKEN"):
        environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def finish(config, client, writer, logger, sweep_run_id, status, study, started, phases=None) -> SweepResult:
    """Closes every trial run, sends what MLflow has not got yet, and closes the sweep run with its summary."""
    logger.close_open_runs()
    if status == "FINISHED" and study is not None:
        close_abandoned_trials(study)
    result = SweepResult(
        experiment=config.name,
        sweep_run_id=sweep_run_id,
        tracking_uri=client.tracking_uri,
        status=status,
        records=list(logger.records.values()),
        study=study,
        wall_seconds=time.monotonic() - started,
        mlflow_seconds=client.seconds,
        mlflow_wait_seconds=writer.waited_seconds,
    )
    summary = {trials_metric(o): result.count(o) for o in Outcome}
    best = result.best(config.search.mode)
    if best:
        summary[best_metric(config.search.metric)] = best.best_val
        summary.update(best.test_scores)
        if best.never_predicted:  # said on the sweep run too: a lost rare label is not found in the totals
            writer.set_tag(sweep_run_id, TAG_NEVER_PREDICTED, ", ".join(best.never_predicted))
    summary.update(phases or {}, wall_seconds=result.wall_seconds)
    summary["mlflow_seconds"] = client.seconds
    summary["mlflow_wait_seconds"] = writer.waited_seconds
    summary["mlflow_retries"] = writer.retries
    if study is not None:
        tracking.log_study(writer, sweep_run_id, study)  # for the report's Optuna plots
    tracking.finish_sweep(writer, sweep_run_id, status, summary)
    writer.close()
    return result


def make_trainable(config: SweepConfig, trial_data: TrialData, code_folder: str | None = None):
    """`run_trial` with the data and settings bound; `code_folder` is where trial processes find the package of
    the sweep's own training function when it is not on their PYTHONPATH."""
    # Data and settings go through with_parameters: once into the object store, never into trial names.
    return tune.with_resources(
        tune.with_parameters(run_trial_reporting_failure, data=trial_data, config=config, code_folder=code_folder),
        {"cpu": config.resources.cpu, "gpu": config.resources.gpu},
    )


def run_trial_reporting_failure(params: dict, *, data: TrialData, config: SweepConfig,
                                code_folder: str | None = None) -> None:
    """The trial (`trainables.run_trial`); an exception it raises ends the trial with the error as its last
    result (outcome.FAILURE) instead of reaching Ray, which would retry it up to resources.max_failures times:
    a retry cures a lost process or node, never an error in the model, its data or a diverged loss."""
    try:
        run_trial(params, data=data, config=config, code_folder=code_folder)
    except Exception:  # not SystemExit: Ray ends a trial it stops (ASHA) that way
        tune.report({FAILURE: traceback.format_exc()})


def log_dataset_report(client, run_id: str, dataset: data.Dataset) -> None:
    """What decoding found and converted (`data_summary.json`), and the skipped bad files: their count and list."""
    tracking.log_params(client, run_id, {PARAM_BAD_IMAGES: len(dataset.bad_files)})
    if dataset.summary:
        client.log_dict(run_id, dataset.summary, DATA_SUMMARY_ARTIFACT)
    if dataset.bad_files:
        client.log_text(run_id, "\n".join(dataset.bad_files) + "\n", BAD_IMAGES_ARTIFACT)


def tune_arguments(config, trainable, searcher, callbacks, state: SweepState, verbose, interrupt: Interrupt) -> dict:
    """`tune.run`'s arguments: the same for a new sweep and a resumed one."""
    if config.scheduler.kind == "asha":
        scheduler = ASHAScheduler(
            time_attr="epoch",
            max_t=config.scheduler.max_epochs,
            grace_period=config.scheduler.grace_period,
            reduction_factor=config.scheduler.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    return dict(
        run_or_experiment=trainable,
        name=state.name,
        storage_path=state.storage_root,
        search_alg=searcher,
        scheduler=scheduler,
        metric=config.search.metric,
        mode=config.search.mode,
        # coordinate: as many trials as the walk proposes (it answers FINISHED at the end)
        num_samples=-1 if config.search.strategy == "coordinate" else config.search.trials,
        max_concurrent_trials=config.resources.concurrent,
        time_budget_s=config.search.time_budget_s,
        reuse_actors=True,  # a new process per trial costs 3-4 s of torch import (docs/stack.md)
        trial_dirname_creator=lambda trial: trial.trial_id,
        callbacks=[*callbacks, TellStoppedTrials(searcher, interrupt), JsonLoggerCallback()],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_at_end=False),
        # A trial whose process or node died is retried from its last checkpoint (README: Cluster).
        max_failures=config.resources.max_failures,
        raise_on_failed_trial=False,  # a failed trial is an outcome of the sweep, told in MLflow, not an error
        verbose=2 if verbose else 0,
    )
