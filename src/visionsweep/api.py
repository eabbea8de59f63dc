"""visionsweep from Python (a notebook, a script): the same functions the command line calls.

    import visionsweep

    result = visionsweep.run({"name": "digits", "space": {"lr": {"loguniform": [0.01, 0.3]}}},
                             overrides=["search.trials=8"], tracking_uri="sqlite:///mlflow.db")
    result.best_value, result.best_run_id
    result.trials                       # a pandas DataFrame, one row per trial
    table = visionsweep.ensemble(result.sweep_run_id, tracking_uri="sqlite:///mlflow.db")
    version = visionsweep.promote(run=result.best_run_id, name="digits", tracking_uri="sqlite:///mlflow.db")
    visionsweep.predict("models:/digits@champion", ["images/"], output="predictions.csv", tracking_uri=...)

The tracking URI is resolved as the command line resolves it (the argument, the config's `tracking.uri`,
$MLFLOW_TRACKING_URI, sqlite:///mlflow.db), and each call leaves `os.environ` as it found it.
"""

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from visionsweep.config import (
    ConfigError,
    SweepConfig,
    apply_overrides,
    load_config,
    parse_config,
    resolve_tracking_uri,
)
from visionsweep.metrics import DEFAULT_THRESHOLD_METHOD


@dataclass
class RunResult:
    """What `run` returns: the sweep's MLflow parent run, its best trial, and a table of every trial."""

    sweep_run_id: str
    best_run_id: str | None  # the best trial's MLflow run (None when no trial scored)
    best_value: float | None  # its `search.metric` at its best epoch
    trials: "pandas.DataFrame"  # noqa: F821 - trial_id, run_id, outcome, epochs, best value, test scores, params
    status: str  # the sweep run's final status: FINISHED, FAILED, KILLED
    tracking_uri: str
    config: SweepConfig
    sweep: object  # the orchestrator's SweepResult: records, the Optuna study, timings


def run(config, *, overrides=(), tracking_uri: str | None = None, storage_path: str | None = None,
        address: str | None = None, verbose: bool = False) -> RunResult:
    """Runs one sweep to the end. `config`: a sweep file's path, a dict of its settings, or a SweepConfig;
    `overrides`: `dotted.key=value` strings, as `--set` takes them. Raises ConfigError before Ray starts."""
    config = as_config(config, overrides)
    from visionsweep.orchestrator import run_sweep

    uri = resolve_tracking_uri(tracking_uri, config)
    with environment_kept():
        result = run_sweep(config, uri, storage_path=storage_path, address=address, verbose=verbose)
    best = result.best(config.search.mode)
    return RunResult(result.sweep_run_id, best.run_id if best else None, best.best_val if best else None,
                     trials_table(result.records, config.search.metric), result.status, uri, config, result)


def ensemble(sweep: str | None = None, *, experiment: str | None = None, members: list[str] | None = None,
             top_k=None, voting: str = "both", greedy_rounds: int = 50, thresholds: str = DEFAULT_THRESHOLD_METHOD,
             tracking_uri: str | None = None, refit: int | None = None, seeds: int | None = None,
             storage_path: str | None = None, address: str | None = None):
    """Votes over a sweep's trials (`sweep`: its run id; or the latest sweep of `experiment`) or over registered
    models (`members`: models:/NAME@ALIAS, ...); returns the EnsembleTable (its `run_id` is the ensemble run).

    `refit` N > 0 first trains the sweep's N best configurations again to the full epoch budget, `seeds` models
    each, in a Ray Tune run (`storage_path`, `address` as for `run`), and votes over those instead; None takes
    the sweep file's `final:` settings (default: no refit)."""
    from visionsweep import tracking
    from visionsweep.ensemble import DEFAULT_TOP_K, parse_top_k, run_ensemble
    from visionsweep.orchestrator import refit_sweep

    top_k = list(top_k or DEFAULT_TOP_K)
    for k in top_k:
        try:
            parse_top_k(str(k))
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if not (experiment or sweep or members):
        raise ConfigError("give --experiment (its latest sweep), --sweep RUN_ID or --members MODEL_URI ...")
    if greedy_rounds < 1:
        raise ConfigError(f"--greedy-rounds {greedy_rounds}: must be at least 1")
    if refit is not None and refit < 0:
        raise ConfigError(f"--refit {refit}: configurations to retrain, 0 (none) or more")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds {seeds}: models per retrained configuration, at least 1")
    if members and (refit or seeds):
        raise ConfigError("--refit and --seeds retrain a sweep's configurations: give --experiment or --sweep, "
                          "not --members")
    with environment_kept():
        uri = resolve_tracking_uri(tracking_uri)
        client = tracking.TimedClient(uri)
        sweep = None if members else sweep or tracking.latest_sweep(client, experiment)
        refit_run_id = None
        if sweep:
            tracking.sweep_run(client, sweep)  # a clear error for an id of no run, or of a trial
            result = refit_sweep(sweep, uri, refit, seeds, storage_path=storage_path, address=address)
            if result is not None:
                if result.status != "FINISHED":
                    raise LookupError(f"refit run {result.sweep_run_id} ended {result.status}: no ensemble of it")
                refit_run_id = result.sweep_run_id
        try:
            return run_ensemble(client, sweep, [str(k) for k in top_k], voting, greedy_rounds, thresholds, members,
                                refit_run_id)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def promote(*, run: str | None = None, ensemble: str | None = None, name: str, alias: str = "champion",
            force: bool = False, tracking_uri: str | None = None):
    """Registers a trial's model (`run`) or an ensemble (`ensemble`: its run id) as `name` and points `alias` at
    it, unless the alias holds a version that scored higher on test (registry.GateRefused; `force` overrides).
    Returns (the ModelVersion, the candidate)."""
    from mlflow.tracking import MlflowClient

    from visionsweep import registry

    if (run is None) == (ensemble is None):
        raise ConfigError("promote: give exactly one of --run RUN_ID and --ensemble RUN_ID")
    with environment_kept():
        uri = resolve_tracking_uri(tracking_uri)
        client = MlflowClient(uri, registry_uri=uri)
        candidate = registry.ensemble_candidate(client, ensemble) if ensemble else registry.trial_candidate(client, run)
        return registry.promote(client, candidate, name, alias, force), candidate


def predict(model: str, paths: list[str], *, output="predictions.csv", batch_size: int = 256,
            tracking_uri: str | None = None) -> tuple[int, list]:
    """Predicts image files or folders with an MLflow model (models:/NAME@ALIAS) into a CSV at `output` ("-":
    stdout), which replaces an older file only when complete. Returns (images predicted, [(path, why) of
    each unreadable file]); raises LookupError when none could be read."""
    from visionsweep import registry

    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    folder = Path(output).absolute().parent
    if output != "-" and not folder.is_dir():
        raise ConfigError(f"--output {output}: no folder {folder}")
    try:
        files = registry.image_files(list(paths))
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    with environment_kept(), written_on_success(output) as stream:
        predicted, failures = registry.predict_files(model, resolve_tracking_uri(tracking_uri), files, stream,
                                                     batch_size)
        if not predicted:
            path, why = failures[0]
            raise LookupError(f"none of the {len(files)} image files could be read (the first: {path}: {why}); "
                              "nothing written")
    return predicted, failures


def as_config(config, overrides=()) -> SweepConfig:
    """A SweepConfig from a sweep file's path, a dict of its settings or a SweepConfig, with `--set` overrides."""
    if isinstance(config, (str, os.PathLike)):
        return load_config(config, list(overrides))
    if isinstance(config, SweepConfig):
        if not overrides:
            return config
        folder = config.folder
        config = config.model_dump(mode="json", exclude_defaults=True)
    elif isinstance(config, dict):
        folder = os.getcwd()  # a notebook's own package sits beside it
    else:
        raise ConfigError(f"config: expected a path, a dict or a SweepConfig, not {type(config).__name__}")
    return parse_config(apply_overrides(config, overrides), folder=folder)


def trials_table(records: list, metric: str):
    import pandas

    rows = [{"trial_id": r.trial_id, "run_id": r.run_id, "outcome": r.outcome.value if r.outcome else None,
             "epochs": r.epochs, f"best_{metric}": r.best_val, **r.test_scores,
             **{f"params.{k}": v for k, v in r.params.items()}} for r in records]
    return pandas.DataFrame(rows)


@contextlib.contextmanager
def environment_kept():
    """Restores os.environ afterwards: Ray and MLflow settings made for the call do not outlive it."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


@contextlib.contextmanager
def written_on_success(path: str):
    """A text file to write `path` through (`-`: stdout): a file beside it that replaces it only when the block
    ends without an error, so a failed command leaves no half-written file and an older one as it was."""
    if path == "-":
        yield sys.stdout
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with open(partial, "w", newline="") as handle:
            yield handle
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
