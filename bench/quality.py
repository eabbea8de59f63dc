"""Model quality: a Fashion-MNIST sweep plus its ensemble inside 60 minutes of wall time on this machine.

Measures: one sweep on all of Fashion-MNIST (the 60,000 training images split into training and
validation rows, the 10,000 given test images as test rows), TPE + ASHA over a recipe calibrated on
this machine (STACK.md: a 4-conv CNN, SGD Nesterov, one-cycle, label smoothing 0.1, batch 256 reached
91.9% test accuracy after 3 epochs at about 100 s per epoch), then the ensemble job.
    fmnist_best_single_accuracy = test accuracy of the trial with the best validation accuracy
    fmnist_ensemble_accuracy    = test accuracy of the soft vote of the top 5 trials by validation
(k = 5 is fixed here, before looking at test scores; the whole top-k table is recorded too.)
Machine: the project's shared machine (2 cores, 24 GB, no GPU), alone under /tmp/visionsweep-heavy.lock:
the full mode takes the machine for up to an hour (`make bench-quality`, not part of `make bench`).
Runs: one sweep, one seed (--quick: digits, 3 trials of 2 epochs, top 3; checks that the script works).
Theoretical best: not known for this budget; published CNNs without extra data reach 93-95%.
Target: ensemble >= 93.0% and >= 0.5 points above the best single trial, all within 60 minutes.
"""

import tempfile
import time

from _record import parse_args, save
from _sweeps import sweep_config

from mlflow.tracking import MlflowClient

from visionsweep import data
from visionsweep.config import SweepConfig
from visionsweep.ensemble import run_ensemble
from visionsweep.orchestrator import run_sweep
from visionsweep.outcome import Outcome

TARGET_ACCURACY = 0.93
TARGET_MARGIN = 0.005  # above the best single trial
BUDGET_SECONDS = 3600
TOP_K = ["1", "3", "5", "10", "100%"]


def config_for(quick: bool) -> tuple[SweepConfig, str]:
    if quick:
        return sweep_config(
            "bench-quality-quick", data={"dataset": "digits"},
            space={"lr": {"loguniform": [0.01, 0.3]}, "dropout": {"uniform": [0.0, 0.5]}},
            search={"trials": 3, "seed": 3}, scheduler={"max_epochs": 2}, resources={"cpu": 1, "concurrent": 2},
        ), "3"
    if "fashion_mnist" not in data.names():
        raise SystemExit("quality needs the fashion_mnist dataset (issue 3)")
    sections = {
        "data": {"dataset": "fashion_mnist", "val_fraction": 0.1},  # 6,000 validation rows; the 10,000 test rows are given
        "model_params": {"n_conv": 3, "channel_growth": 2.0, "dense": 128, "batchnorm": True},
        "train": {"optimizer": "sgd", "batch_size": 256, "schedule": "onecycle", "label_smoothing": 0.1},
        "space": {
            "lr": {"loguniform": [0.05, 0.5]},  # one-cycle peak, per optimizer step
            "weight_decay": {"loguniform": [1.0e-5, 1.0e-3]},
            "channels": {"categorical": [24, 32]},
            "dropout": {"uniform": [0.1, 0.5]},
            "seed": {"int": [0, 10_000]},  # diverse members vote better
        },
        # About 100 s per epoch and trial, two trials at once on 2 cores. 4 epochs at most (grace 1) used 20 of
        # the 60 minutes and peaked at 91.7% (2026-11-22): one-cycle needs more epochs. With rungs at 2, 4 and 8
        # epochs, 12 trials use about 48 epochs: about 40 minutes.
        "search": {"trials": 12, "seed": 0},
        "scheduler": {"kind": "asha", "max_epochs": 8, "grace_period": 2, "reduction_factor": 2},
        "resources": {"cpu": 1, "concurrent": 2},
    }
    if "augment" in SweepConfig.model_fields:  # searchable augmentation (issue 3): flips help clothing images
        sections["augment"] = {"hflip": 0.5}
    return sweep_config("bench-quality", **sections), "5"


def main():
    args = parse_args(__doc__)
    config, k = config_for(args.quick)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        sweep = run_sweep(config, uri, storage_path=f"{folder}/ray")
        table = run_ensemble(MlflowClient(uri), sweep.sweep_run_id, TOP_K if not args.quick else ["1", k, "100%"])
    wall = time.monotonic() - started
    chosen = next(row for row in table.rows if row["label"] == k)
    ensemble, single = chosen["soft"], table.best_single
    met = ensemble >= TARGET_ACCURACY and ensemble - single >= TARGET_MARGIN and wall <= BUDGET_SECONDS
    save(
        args,
        "quality",
        {
            "measures": f"test accuracy: best single trial (by validation) and soft vote of the top {k}",
            "headline": f"ensemble {ensemble:.4f} vs best single {single:.4f} in {wall / 60:.0f} min",
            "target": "ensemble >= 0.930 and >= best single + 0.005, <= 60 min",
            "met": met,
            "runs": f"1 sweep of {config.search.trials} trials ({config.data.dataset}), one seed",
            "dataset": config.data.dataset,
            "wall_seconds": round(wall, 1),
            "sweep_wall_seconds": round(sweep.wall_seconds, 1),
            "trials": {o.value: sweep.count(o) for o in Outcome},
            "ensemble_k": k,
            "table": table.rows,
            "chosen_on_validation": {key: table.final.get(key) for key in ("name", "val", "test")},
        },
        summary={"fmnist_best_single_accuracy": round(single, 4), "fmnist_ensemble_accuracy": round(ensemble, 4)},
    )


if __name__ == "__main__":
    main()
