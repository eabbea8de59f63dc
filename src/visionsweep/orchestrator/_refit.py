"""`visionsweep ensemble --refit N`: a sweep's N best configurations trained again, each to the full epoch budget.

ASHA stops most trials at an early rung, so a sweep's trials make under-trained ensemble members that differ
mostly in how early they stopped. A refit trains the best configurations (a pruned trial's too: ranked by the
best validation score its trial reached) for every epoch, with new seeds, as one more Ray Tune run: FIFO (nothing
stops early), the sweep's resources, its stored split and the same trial and tracking code as the sweep. Its
MLflow record is a run of kind refit under the sweep run, with a trial run per configuration and seed.
"""

import math
import time

import yaml

from visionsweep import data, tracking
from visionsweep.config import SweepConfig
from visionsweep.orchestrator._resume import stored_config
from visionsweep.orchestrator._searcher import GivenConfigs
from visionsweep.orchestrator._state import SweepState
from visionsweep.orchestrator._sweep import SweepResult, drive
from visionsweep.record import SPLIT_ARTIFACT, TAG_DATA_FINGERPRINT, TAG_REFIT_OF, best_metric
from visionsweep.trainables import TrialData, load_trainable

SEED = "seed"  # the training recipe's seed (train.seed), as a trial's parameter


def refit_sweep(
    sweep_run_id: str, tracking_uri: str, configs: int | None = None, seeds: int | None = None,
    epochs: int | None = None, storage_path: str | None = None, address: str | None = None, verbose: bool = False,
) -> SweepResult | None:
    """Trains the sweep's `configs` best distinct configurations again, `seeds` models each, for `epochs`; each
    None takes the sweep file's `final:` section (epochs: else scheduler.max_epochs). Returns the refit's result,
    whose `sweep_run_id` is the refit run; None when there is nothing to refit (`configs` 0)."""
    started = time.monotonic()
    client = tracking.TimedClient(tracking_uri)
    sweep = client.get_run(sweep_run_id)
    config = stored_config(client, sweep_run_id, sweep)
    configs = config.final.refit if configs is None else configs
    seeds = seeds or config.final.seeds
    if not configs:
        return None
    chosen = best_configurations(client, sweep_run_id, config, configs)
    if not chosen:
        raise LookupError(f"sweep {sweep_run_id} has no trial with a validation score to refit")
    points, sources = [], []
    for run_id, params in chosen:
        for seed in new_seeds(params.get(SEED, config.train.seed), seeds, config.search.repeats):
            points.append({**params, SEED: seed})
            sources.append(run_id)
    refit = refit_config(config, len(points), epochs)
    _, code_folder = load_trainable(refit.trainable, refit.folder)
    trial_data = stored_split_data(client, sweep, refit)

    writer = tracking.BufferedClient(client, refit.tracking.batch_seconds)
    refit_run_id = tracking.start_refit(writer, sweep, refit)
    state = SweepState.create(refit, refit_run_id, storage_path)
    for key, value in state.tags().items():
        writer.set_tag(refit_run_id, key, value)
    logger = tracking.TrialLogger(writer, sweep.info.experiment_id, refit_run_id, refit, trial_data)
    print(f"refit run {refit_run_id}: {len(chosen)} configuration(s) x {seeds} seed(s), "
          f"{refit.scheduler.max_epochs} epochs each", flush=True)
    searcher = GivenConfigs(points, refit.search.metric, refit.search.mode)
    result = drive(refit, state, trial_data, client, writer, logger, address, verbose, started=started,
                   code_folder=code_folder, searcher=searcher)
    # Which sweep trial each refit trial retrains: known by the order the searcher handed the points out.
    run_of_trial = {record.trial_id: record.run_id for record in result.records}
    for index, trial_id in enumerate(searcher.given):
        if trial_id in run_of_trial:
            client.set_tag(run_of_trial[trial_id], TAG_REFIT_OF, sources[index])
    return result


def best_configurations(client, sweep_run_id: str, config: SweepConfig, count: int) -> list[tuple[str, dict]]:
    """The `count` best distinct configurations of the sweep's trials: (trial run id, its parameters), ranked
    by the best validation score the trial reached, whatever rung ASHA stopped it at; ties go to the earlier
    trial. Configurations that differ only in their seed are one configuration (the refit gives new seeds)."""
    metric, mode = config.search.metric, config.search.mode
    runs = tracking.trial_runs(client, sweep_run_id, order_by=[
        f"metrics.{best_metric(metric)} {'DESC' if mode == 'max' else 'ASC'}", "attributes.start_time ASC"])
    chosen, seen = [], set()
    for run in runs:
        if not math.isfinite(run.data.metrics.get(best_metric(metric), math.nan)):
            continue  # failed, or never scored
        # MLflow keeps parameters as text: read back as YAML, as a resumed driver reads them (tracking.recover_records)
        params = {key: yaml.safe_load(value) for key, value in run.data.params.items()}
        key = yaml.safe_dump({k: v for k, v in params.items() if k != SEED}, sort_keys=True)
        if key not in seen:
            seen.add(key)
            chosen.append((run.info.run_id, params))
        if len(chosen) == count:
            break
    return chosen


def new_seeds(seed: int, count: int, repeats: int = 1) -> list[int]:
    """`count` training seeds other than the trial's own (`seed` .. `seed + repeats - 1` with search.repeats)."""
    return [seed + repeats * (index + 1) for index in range(count)]


def refit_config(config: SweepConfig, trials: int, epochs: int | None = None) -> SweepConfig:
    """The sweep's settings for a refit: `trials` trials, FIFO (each runs every epoch), no time budget."""
    epochs = epochs or config.final.epochs or config.scheduler.max_epochs
    return config.model_copy(update={  # a copy keeps the sweep file's folder
        "scheduler": config.scheduler.model_copy(update={"kind": "fifo", "max_epochs": epochs,
                                                         "grace_period": min(config.scheduler.grace_period, epochs)}),
        "search": config.search.model_copy(update={"trials": trials, "time_budget_s": None}),
    })


def stored_split_data(client, sweep, config: SweepConfig) -> TrialData:
    """The trials' data on the rows the sweep stored in its split, from the same dataset (checked)."""
    dataset = data.load(config.data)
    if dataset.fingerprint() != sweep.data.tags.get(TAG_DATA_FINGERPRINT):
        raise LookupError(f"sweep {sweep.info.run_id}: dataset {config.data.dataset!r} changed since the sweep ran")
    stored = tracking.load_artifact_npz(client, sweep.info.run_id, SPLIT_ARTIFACT)
    split = data.Split(stored["train"], stored["val"], stored["test"], stored.get("folds"))
    trial_data = TrialData.of(dataset, split)
    config.check_task(trial_data.task)
    return trial_data

