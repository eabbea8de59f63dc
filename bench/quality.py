"""Model quality: a Fashion-MNIST sweep plus its ensemble inside 60 minutes of wall time on this machine.

Measures: one sweep on all of Fashion-MNIST (the 60,000 training images split into training and
validation rows, the 10,000 given test images as test rows), TPE + ASHA over a recipe calibrated on
this machine, then the ensemble job.
    fmnist_best_single_accuracy = test accuracy of the trial with the best validation accuracy
    fmnist_ensemble_accuracy    = test accuracy of the ensemble the job itself picks as final: of the top-k
                                  soft and hard votes, greedy and bagged selection and fitted weights, the best on
                                  validation rows (test rows play no part in choosing it)
The soft vote of the top 5 by validation (the figure of earlier runs) and the whole table are recorded too.
The recipe: a 3-block CNN (32-64-128 channels, batchnorm, dense 128), SGD Nesterov with one-cycle over 12
epochs, label smoothing 0.1, horizontal flips, batch 256, bfloat16 autocast with channels-last (2.4x per
step on this machine's AMX units, bench/precision.py). Calibrated alone (2026-12-02): one such model reached
93.4% validation accuracy at epoch 10 of 12, about 37 s per epoch with two trials at once.
Budget: ASHA rungs at 4 and 12 epochs (reduction factor 3), and `search.time_budget_s` 3000: the trials stop
at 50 minutes, so start-up and the ensemble job fit in the hour. Without it (2026-12-02, 20 trials) ASHA let
12 of 20 trials run all 12 epochs (TPE kept proposing better ones, and early trials are promoted against few
rivals) and the sweep took 63 minutes. The trials that ran all 12 epochs head the ranking: pruned ones
stopped while one-cycle was still near its peak learning rate.
Machine: the project's shared machine (2 cores, 24 GB, no GPU; its CPU must have bfloat16 units - Intel AMX,
or AMD's AVX-512 BF16: 2.45x per step on 2026-12-03 - for this recipe to train enough epochs in the hour),
alone under /tmp/visionsweep-heavy.lock: the full mode takes the
machine for up to an hour (`make bench-quality`, not part of `make bench`).
Refit (--refit N, default 6; 0 for none): after the sweep, its N best configurations are trained again for all 12 epochs
(visionsweep ensemble --refit, one new seed each) and ensembled too; the final is whichever of the two final
ensembles, the sweep's trials' or the refit's, has the better held-out validation score (test rows play no
part), so a refit is used only where validation says it pays. Its time comes out of the sweep's: the sweep's
time budget shrinks by ceil(N / 2) x 12 epochs x 40 s (two trials at once, the calibrated epoch plus margin).
Runs: one sweep, one seed (--quick: digits, 3 trials of 2 epochs, top 3; checks that the script works).
Theoretical best: not known for this budget; published CNNs without extra data reach 93-95%.
Target: ensemble >= 93.5% and >= 0.5 points above the best single trial, all within 60 minutes.
"""

import tempfile
import time

from _record import parse_args, save
from _sweeps import sweep_config

from mlflow.tracking import MlflowClient

from visionsweep import data
from visionsweep.config import SweepConfig
from visionsweep.ensemble import run_ensemble
from visionsweep.orchestrator import refit_sweep, run_sweep
from visionsweep.outcome import Outcome

TARGET_ACCURACY = 0.935
TARGET_MARGIN = 0.005  # above the best single trial
BUDGET_SECONDS = 3600
TOP_K = ["1", "3", "5", "10", "100%"]
EPOCH_SECONDS = 40  # one epoch of the full recipe, two trials at once (37 s calibrated) plus margin


def config_for(quick: bool) -> tuple[SweepConfig, str]:
    if quick:
        return sweep_config(
            "bench-quality-quick", data={"dataset": "digits"},
            space={"lr": {"loguniform": [0.01, 0.3]}, "dropout": {"uniform": [0.0, 0.5]}},
            search={"trials": 3, "seed": 3}, scheduler={"max_epochs": 2}, resources={"cpu": 1, "concurrent": 2},
        ), "3"
    if "fashion_mnist" not in data.names():
        raise SystemExit("quality needs the fashion_mnist dataset (apt-get install dataset-fashion-mnist)")
    sections = {
        "data": {"dataset": "fashion_mnist", "val_fraction": 0.1},  # 6,000 validation rows; the 10,000 test rows are given
        "model_params": {"n_conv": 3, "channels": 32, "channel_growth": 2.0, "dense": 128, "batchnorm": True},
        "train": {"optimizer": "sgd", "batch_size": 256, "schedule": "onecycle", "label_smoothing": 0.1,
                  "precision": "bf16"},
        "augment": {"hflip": 0.5},  # clothing looks the same mirrored
        "space": {
            "lr": {"loguniform": [0.05, 0.5]},  # one-cycle peak, per optimizer step
            "weight_decay": {"loguniform": [1.0e-5, 1.0e-3]},
            "dropout": {"uniform": [0.1, 0.5]},
            "seed": {"int": [0, 10_000]},  # diverse members vote better
        },
        # The trials stop at 50 minutes whatever ASHA promotes: start-up and the ensemble job fit in the rest.
        "search": {"trials": 24, "seed": 0, "time_budget_s": 3000},
        "scheduler": {"kind": "asha", "max_epochs": 12, "grace_period": 4, "reduction_factor": 3},
        "resources": {"cpu": 1, "concurrent": 2},
    }
    return sweep_config("bench-quality", **sections), "5"


def options(parser) -> None:
    parser.add_argument("--refit", type=int, default=6, metavar="N",
                        help="retrain the sweep's N best configurations to the full budget and ensemble them too")


def with_refit_budget(config: SweepConfig, refit: int) -> SweepConfig:
    """The sweep's time budget less the refit's estimated time (refit configurations run two at a time)."""
    if not refit or config.search.time_budget_s is None:
        return config
    refit_seconds = -(-refit // config.resources.concurrent) * config.scheduler.max_epochs * EPOCH_SECONDS
    search = config.search.model_copy(update={"time_budget_s": config.search.time_budget_s - refit_seconds})
    return config.model_copy(update={"search": search})


def main():
    args = parse_args(__doc__, options)
    config, k = config_for(args.quick)
    refits = min(args.refit, 2) if args.quick else args.refit  # --quick: the refit path runs, on two
    config = with_refit_budget(config, refits)
    started = time.monotonic()
    refit_table = None
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        client = MlflowClient(uri)
        top_k = TOP_K if not args.quick else ["1", k, "100%"]
        sweep = run_sweep(config, uri, storage_path=f"{folder}/ray")
        table = run_ensemble(client, sweep.sweep_run_id, top_k)
        if refits:
            refit = refit_sweep(sweep.sweep_run_id, uri, refits, 1, storage_path=f"{folder}/ray")
            refit_table = run_ensemble(client, sweep.sweep_run_id, top_k, refit_run_id=refit.sweep_run_id)
    wall = time.monotonic() - started
    sweep_table = table
    if refit_table is not None and refit_table.final["held_out"] > table.final["held_out"]:
        table = refit_table  # chosen on validation: the refit pays
    top_k_soft = next(row for row in sweep_table.rows if row["label"] == k)["soft"]
    ensemble, single = table.final["test"], sweep_table.best_single
    met = ensemble >= TARGET_ACCURACY and ensemble - single >= TARGET_MARGIN and wall <= BUDGET_SECONDS
    save(
        args,
        "quality",
        {
            "measures": "test accuracy: best single trial (by validation) and the ensemble chosen on validation",
            "headline": (f"ensemble {ensemble:.4f} ({table.final['name']}"
                         f"{' of the refit' if table is refit_table else ''}) vs best single {single:.4f} "
                         f"in {wall / 60:.0f} min; top-{k} soft vote {top_k_soft:.4f}"),
            "target": "ensemble >= 0.935 and >= best single + 0.005, <= 60 min",
            "met": met,
            "runs": f"1 sweep of {config.search.trials} trials ({config.data.dataset}), one seed"
                    + (f", then a refit of its {refits} best configurations" if refits else ""),
            "dataset": config.data.dataset,
            "wall_seconds": round(wall, 1),
            "sweep_wall_seconds": round(sweep.wall_seconds, 1),
            "trials": {o.value: sweep.count(o) for o in Outcome},
            "ensemble_k": k,
            f"top_{k}_soft_vote": top_k_soft,
            "table": table.rows,
            "methods": table.methods,
            "chosen_on_validation": {key: table.final.get(key) for key in ("name", "val", "held_out", "test")},
            "refit": None if refit_table is None else {
                "configurations": refits, "chosen": table is refit_table, "best_single": refit_table.best_single,
                "final": {key: refit_table.final.get(key) for key in ("name", "val", "held_out", "test")},
                "sweep_final": {key: sweep_table.final.get(key) for key in ("name", "val", "held_out", "test")},
                "final_members": refit_table.final_members},
        },
        summary={"fmnist_best_single_accuracy": round(single, 4), "fmnist_ensemble_accuracy": round(ensemble, 4)},
    )


if __name__ == "__main__":
    main()
