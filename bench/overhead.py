"""Orchestration overhead: what a sweep costs beyond the training it runs.

Measures: the same N trial configs (drawn by the sweep's own seeded random sampler, checked equal
afterwards) run twice: (1) bare, a serial loop calling the very trainable the sweep uses
(visionsweep.trainables.train_classifier) in this process, with a Trial whose reports go to a list
instead of Ray Tune: no Ray, no MLflow, no checkpoint copies; (2) as a sweep,
visionsweep.orchestrator.run_sweep with the FIFO scheduler at the same concurrency, sqlite MLflow.
The bare pass is split around the sweep, the first half of the configs before it and the second half
after it (Ray shut down): a machine that slows or speeds up during the run then weighs on both sides alike,
where a bare pass wholly before the sweep charged the drift to the sweep (bench/RESULTS.md, 2026-12-02).
    overhead_ratio = sweep wall / (bare work / concurrency)
The tuner-alone ratio puts the sweep run's `tune_seconds` metric (Tuner.fit only, without data
loading, MLflow setup and ray.init) in place of the wall time.
Machine: the project's shared machine (2 cores, 24 GB, no GPU), under /tmp/visionsweep-heavy.lock;
other helpers' light work still runs, so per-trial bare times are reported with their spread.
Runs: one bare pass (in two halves) and one sweep per invocation (full: 8 trials on digits, 1 CPU per trial, epochs
calibrated first so that each trial trains for at least 10 s; --quick: 2 trials of 1 epoch).
Theoretical best: 1.0 (a sweep adds nothing to the bare work); target <= 1.10.
"""

import math
import tempfile
import time

from _record import parse_args, save
from _sweeps import Timeline, planned_params, run_bare, spread, sweep_config

import ray
from mlflow.tracking import MlflowClient

from visionsweep import tracking
from visionsweep.orchestrator import run_sweep

TARGET = 1.10


def options(parser):
    parser.add_argument("--trials", type=int, help="trial configs (default 8; quick 2)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: enough for --trial-seconds; quick 1)")
    parser.add_argument("--trial-seconds", type=float, default=10, help="training per trial, full mode (default 10)")
    parser.add_argument("--concurrency", type=int, default=1, help="trials at once in the sweep (default 1)")


def workload(trials: int, epochs: int, concurrency: int):
    return sweep_config(
        "bench-overhead",
        data={"dataset": "digits"},
        # Wide enough that an epoch is a real amount of work (about 0.5 s on one core), not a handful of steps.
        model_params={"n_conv": 2, "channels": 128, "dense": 256},
        train={"batch_size": 32},
        # A fixed architecture: every trial does the same work, so the spread of bare times measures noise.
        space={"lr": {"loguniform": [0.01, 0.2]}, "seed": {"int": [0, 10_000]}},
        search={"sampler": "random", "trials": trials, "seed": 7},
        scheduler={"kind": "fifo", "max_epochs": epochs},
        resources={"cpu": 1, "concurrent": concurrency},
    )


def epochs_for(config, params: dict, trial_seconds: float) -> int:
    """Epochs that make a trial last `trial_seconds` on this machine now (after one warm-up epoch)."""
    run_bare(config, [params])  # first use of torch kernels and the data: not representative
    timed = config.model_copy(update={"scheduler": config.scheduler.model_copy(update={"max_epochs": 2})})
    epoch_seconds = run_bare(timed, [params])[0] / 2
    return math.ceil(1.1 * trial_seconds / epoch_seconds)


def main():
    args = parse_args(__doc__, options)
    trials = args.trials or (2 if args.quick else 8)
    config = workload(trials, 1, args.concurrency)
    params = planned_params(config)
    epochs = args.epochs or (1 if args.quick else epochs_for(config, params[0], args.trial_seconds))
    config = workload(trials, epochs, args.concurrency)
    half = len(params) // 2
    bare_before = run_bare(config, params[:half])

    timeline = Timeline()
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        # The store exists before the timed sweep, as for any sweep after a user's first one.
        created = time.perf_counter()
        tracking.connect(uri, config.name)
        store_creation = time.perf_counter() - created
        result = run_sweep(config, uri, storage_path=f"{folder}/ray", callbacks=[timeline])
        phases = MlflowClient(uri).get_run(result.sweep_run_id).data.metrics
    ray.shutdown()  # the second bare half runs on a machine without Ray's processes, as the first did
    bare_after = run_bare(config, params[half:])
    bare = bare_before + bare_after
    bare_work = sum(bare)
    swept = sorted(map(_key, (r.params for r in result.records)))
    if swept != sorted(map(_key, params)):
        raise RuntimeError("the sweep ran other configs than the bare loop")

    ideal = bare_work / args.concurrency
    ratio = result.wall_seconds / ideal
    tuner_ratio = phases["tune_seconds"] / ideal
    in_trial = sum(timeline.trial_seconds().values())
    breakdown = {
        "startup_seconds": phases["startup_seconds"],  # data, split, MLflow parent run, ray.init, Tuner build
        "tune_seconds": phases["tune_seconds"],  # Tuner.fit
        "teardown_seconds": result.wall_seconds - phases["startup_seconds"] - phases["tune_seconds"],
        "trial_training_seconds": in_trial,  # epochs as timed inside the trials (sum over trials)
        "mlflow_seconds": result.mlflow_seconds,  # driver's MLflow calls, inside the phases above
        # Inside Tuner.fit but outside epochs: actor start (torch import), first trial, checkpoints, results.
        "tuner_outside_epochs_seconds": phases["tune_seconds"] * args.concurrency - in_trial,
    }
    save(
        args,
        "overhead",
        {
            "measures": "sweep wall / (bare serial work / concurrency), FIFO, same configs",
            "headline": f"{ratio:.3f} (Tuner alone {tuner_ratio:.3f})",
            "target": f"<= {TARGET}",
            "met": ratio <= TARGET,
            "runs": f"1 bare pass (half before, half after the sweep) + 1 sweep, {trials} trials x {epochs} epochs, "
                    f"concurrency {args.concurrency}",
            "overhead_ratio": round(ratio, 4),
            "tuner_ratio": round(tuner_ratio, 4),
            "sweep_wall_seconds": round(result.wall_seconds, 2),
            "bare_work_seconds": round(bare_work, 2),
            "bare_trial_seconds": spread(bare),
            # Identical work: a gap between the halves is the machine's drift over the sweep.
            "bare_seconds_before_and_after": [round(sum(bare_before), 2), round(sum(bare_after), 2)],
            "trials": trials,
            "epochs": epochs,
            "concurrency": args.concurrency,
            "breakdown_seconds": {k: round(v, 2) for k, v in breakdown.items()},
            "store_creation_seconds": round(store_creation, 2),  # a new sqlite store's tables; not in the ratio
            "per_trial_overhead_seconds": round((phases["tune_seconds"] * args.concurrency - bare_work) / trials, 3),
        },
        summary={"overhead_ratio": round(ratio, 4)},
    )


def _key(params: dict) -> tuple:
    return tuple(sorted((k, round(v, 9) if isinstance(v, float) else v) for k, v in params.items()))


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"overhead: {time.monotonic() - started:.0f} s")
