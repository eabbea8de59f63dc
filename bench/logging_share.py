"""MLflow logging overhead: the share of a sweep's wall time spent in MLflow calls, ours against Ray's stock logger.

(Named logging_share.py, not logging.py: a script's folder comes first on sys.path, and a bench/logging.py
would replace the standard library's `logging` for Ray and MLflow.)

Measures, on two sweeps, each run twice on the same seeds with its own sqlite MLflow stores:
(a) as the tool runs it: the driver-side TrialLogger, whose writes a background thread sends, a window's
metrics, params and tags of a run in one log_batch; its time in MLflow calls is the sweep's `mlflow_seconds`
(a timed client, also logged on the parent run). (b) the same sweep with Ray's stock
ray.air.integrations.mlflow.MLflowLoggerCallback added, logging to a second store; its hooks (setup, trial
start, each result, trial end) are timed.
    logging_share = our MLflow seconds / sweep wall seconds            (sweep a)
    stock share   = stock callback seconds / sweep wall seconds        (sweep b)
The sweeps: `fashion`, the ASHA benchmark's (bench/asha_efficiency.py): Fashion-MNIST, 2,000 training and
1,000 validation images, its whole-architecture space (11 parameters), 16 trials of TPE + ASHA (up to 9 epochs, grace 1, 2 at
once), epochs of about a second: the headline, and still far shorter epochs than a real sweep's (a full
Fashion-MNIST epoch takes 40-100 s here); `demo`, examples/digits.yaml (16 trials, 8 x 8 digits, epochs of
0.1-0.2 s: each trial is mostly start-up and bookkeeping), the worst case, reported beside it.
Both stores exist before the sweeps start (as for any sweep after the first).
Machine: the project's shared machine (2 cores, 24 GB, no GPU), under /tmp/visionsweep-heavy.lock.
Runs: one sweep each, per sweep (--sweeps: both by default, `make bench` runs fashion alone to stay within its
10 minutes; --quick: the demo, 1 trial of 1 epoch). Sweep (b) also gives a second figure
for ours. Theoretical best: 0 (logging that costs nothing); target <= 2%.
"""

import tempfile
import time

from _record import BENCH, parse_args, save
from asha_efficiency import tpe_asha_config

from mlflow.tracking import MlflowClient
from ray.air.integrations.mlflow import MLflowLoggerCallback

from visionsweep.config import load_config
from visionsweep.orchestrator import run_sweep

TARGET = 0.02
DEMO = BENCH.parent / "examples" / "digits.yaml"


class TimedMLflowLoggerCallback(MLflowLoggerCallback):
    """Ray's stock MLflow callback, timed around every hook that talks to MLflow."""

    seconds = 0.0
    calls = 0

    def _timed(self, hook, *args, **kwargs):
        started = time.perf_counter()
        try:
            return hook(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    def setup(self, *args, **kwargs):
        return self._timed(super().setup, *args, **kwargs)

    def log_trial_start(self, trial):
        return self._timed(super().log_trial_start, trial)

    def log_trial_result(self, iteration, trial, result):
        return self._timed(super().log_trial_result, iteration, trial, result)

    def log_trial_end(self, trial, failed=False):
        return self._timed(super().log_trial_end, trial, failed)


def configs(quick: bool, names: list[str]) -> dict:
    """The sweeps by name, the headline's first."""
    if quick:
        return {"demo": load_config(DEMO, ["name=bench-logging", "search.trials=1", "scheduler.max_epochs=1",
                                           "scheduler.grace_period=1"])}
    sweeps = {"fashion": lambda: tpe_asha_config("bench-logging-fashion", trials=16, seed=1),
              "demo": lambda: load_config(DEMO, ["name=bench-logging"])}
    return {name: sweeps[name]() for name in names}


def measure(config, folder: str) -> dict:
    """Ours alone, then ours beside Ray's stock callback, on the same config and seeds."""
    for store in ("ours", "stock", "ours-beside-stock"):  # a new sqlite store spends about a second on its tables
        MlflowClient(f"sqlite:///{folder}/{store}.db").search_experiments()
    ours = run_sweep(config, f"sqlite:///{folder}/ours.db", storage_path=f"{folder}/ray")
    stock = TimedMLflowLoggerCallback(f"sqlite:///{folder}/stock.db", experiment_name=f"{config.name}-stock")
    both = run_sweep(config, f"sqlite:///{folder}/ours-beside-stock.db", storage_path=f"{folder}/ray", callbacks=[stock])
    results = sum(len(r.metric_by_epoch) for r in ours.records)
    return {
        "share": round(ours.mlflow_seconds / ours.wall_seconds, 5),
        "ours": {
            "mlflow_seconds": round(ours.mlflow_seconds, 2),
            # The writes go out from a background thread; the Tune loop waits only for these.
            "mlflow_wait_seconds": round(ours.mlflow_wait_seconds, 2),
            "wait_share": round(ours.mlflow_wait_seconds / ours.wall_seconds, 5),
            "wall_seconds": round(ours.wall_seconds, 2),
            "trials": len(ours.records),
            "results": results,
            "ms_per_result": round(1000 * ours.mlflow_seconds / max(1, results), 1),  # includes run start/end
            "share_in_second_sweep": round(both.mlflow_seconds / both.wall_seconds, 5),
        },
        "stock_callback": {
            "share": round(stock.seconds / both.wall_seconds, 5),
            "seconds": round(stock.seconds, 2),
            "hook_calls": stock.calls,
            "wall_seconds": round(both.wall_seconds, 2),
            "results": sum(len(r.metric_by_epoch) for r in both.records),
        },
    }


def main():
    args = parse_args(__doc__, lambda parser: parser.add_argument(
        "--sweeps", nargs="+", choices=["fashion", "demo"], default=["fashion", "demo"],
        help="which sweeps, the headline's first (default both; `make bench` runs fashion alone)"))
    sweeps = configs(args.quick, args.sweeps)
    with tempfile.TemporaryDirectory() as folder:
        measured = {name: measure(config, f"{folder}/{name}") for name, config in sweeps.items()}
    headline_sweep = next(iter(measured))
    share = measured[headline_sweep]["share"]
    describe = lambda name: (f"{measured[name]['share']:.2%} on {name} (Ray's MLflowLoggerCallback "  # noqa: E731
                             f"{measured[name]['stock_callback']['share']:.2%})")
    save(
        args,
        "logging",
        {
            "measures": "seconds in MLflow calls / sweep wall seconds (driver side)",
            "headline": "; ".join(describe(name) for name in measured),
            "target": f"<= {TARGET:.0%}",
            "met": share <= TARGET,
            "runs": ", ".join(f"2 sweeps of {sweeps[name].search.trials} trials ({name})" for name in measured),
            "logging_share": share,
            "headline_sweep": headline_sweep,
            **measured,
        },
        summary={"logging_share": share},
    )


if __name__ == "__main__":
    main()
