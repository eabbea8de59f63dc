"""MLflow logging overhead: the share of a sweep's wall time spent in MLflow calls, ours against Ray's stock logger.

(Named logging_share.py, not logging.py: a script's folder comes first on sys.path, and a bench/logging.py
would replace the standard library's `logging` for Ray and MLflow.)

Measures: the demo sweep (examples/digits.yaml: TPE + ASHA, 16 trials, 2 at once) run twice on the same
seeds, each with its own sqlite MLflow store. (a) as the tool runs it: the driver-side TrialLogger, one
log_batch per result; its time in MLflow calls is the sweep's `mlflow_seconds` (a timed client, also
logged on the parent run). (b) the same sweep with Ray's stock ray.air.integrations.mlflow.MLflowLoggerCallback
added, logging to a second store; its hooks (setup, trial start, each result, trial end) are timed.
    logging_share = our MLflow seconds / sweep wall seconds            (sweep a)
    stock share   = stock callback seconds / sweep wall seconds        (sweep b)
Both stores exist before the sweeps start (as for any sweep after the first).
Machine: the project's shared machine (2 cores, 24 GB, no GPU), under /tmp/visionsweep-heavy.lock.
Runs: one sweep each (--quick: 1 trial of 1 epoch). Sweep (b) also gives a second figure for ours.
Theoretical best: 0 (logging that costs nothing); target <= 2%.
"""

import tempfile
import time

from _record import BENCH, parse_args, save

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


def main():
    args = parse_args(__doc__)
    overrides = ["search.trials=1", "scheduler.max_epochs=1", "scheduler.grace_period=1"] if args.quick else []
    config = load_config(DEMO, overrides + ["name=bench-logging"])
    with tempfile.TemporaryDirectory() as folder:
        # Stores that exist before the timed sweeps (a new sqlite store spends about a second on its tables).
        for store in ("ours", "stock", "ours-beside-stock"):
            MlflowClient(f"sqlite:///{folder}/{store}.db").search_experiments()
        ours = run_sweep(config, f"sqlite:///{folder}/ours.db", storage_path=f"{folder}/ray")
        stock = TimedMLflowLoggerCallback(f"sqlite:///{folder}/stock.db", experiment_name="bench-logging-stock")
        both = run_sweep(config, f"sqlite:///{folder}/ours-beside-stock.db", storage_path=f"{folder}/ray", callbacks=[stock])
    results = sum(len(r.metric_by_epoch) for r in ours.records)
    share = ours.mlflow_seconds / ours.wall_seconds
    wait_share = ours.mlflow_wait_seconds / ours.wall_seconds
    stock_share = stock.seconds / both.wall_seconds
    save(
        args,
        "logging",
        {
            "measures": "seconds in MLflow calls / sweep wall seconds (driver side)",
            "headline": f"{share:.2%}, of which the sweep waited {wait_share:.2%} (Ray's MLflowLoggerCallback {stock_share:.2%})",
            "target": f"<= {TARGET:.0%}",
            "met": share <= TARGET,
            "runs": f"2 sweeps of {config.search.trials} trials (examples/digits.yaml{', quick' if args.quick else ''})",
            "logging_share": round(share, 5),
            "ours": {
                "mlflow_seconds": round(ours.mlflow_seconds, 2),
                # The writes go out from a background thread; the Tune loop waits only for these.
                "mlflow_wait_seconds": round(ours.mlflow_wait_seconds, 2),
                "wait_share": round(wait_share, 5),
                "wall_seconds": round(ours.wall_seconds, 2),
                "results": results,
                "ms_per_result": round(1000 * ours.mlflow_seconds / max(1, results), 1),  # includes run start/end
                "share_in_second_sweep": round(both.mlflow_seconds / both.wall_seconds, 5),
            },
            "stock_callback": {
                "share": round(stock_share, 5),
                "seconds": round(stock.seconds, 2),
                "hook_calls": stock.calls,
                "wall_seconds": round(both.wall_seconds, 2),
                "results": sum(len(r.metric_by_epoch) for r in both.records),
            },
        },
        summary={"logging_share": round(share, 5)},
    )


if __name__ == "__main__":
    main()
