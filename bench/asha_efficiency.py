"""ASHA efficiency: how many epochs TPE + ASHA needs to come within 0.3 points of what random search finds at full budget.

Measures: on a stratified Fashion-MNIST subset (2,000 training images, 1,000 validation, 1,000 of the given
test images), the same search space swept twice, 2 trials at once: (a) random search, every trial trained
for the full max_epochs (FIFO): its best validation accuracy R and the epochs it consumed (trials x
max_epochs); (b) TPE + ASHA (the tool's default: grace 1 epoch, reduction factor 3), twice as many trials.
Every reported epoch counts as one consumed epoch, in the order results reach the driver.
    asha_epoch_fraction = epochs (b) consumed until its best validation accuracy >= R - 0.003
                          / epochs (a) consumed
Null when (b) never gets there. One seed per search: the figure moves with the seeds; read it as one draw.
Machine: the project's shared machine (2 cores, 24 GB, no GPU), under /tmp/visionsweep-heavy.lock.
Runs: one sweep each (--quick: digits, 1 random trial of 2 epochs against 2 TPE + ASHA trials).
Theoretical best: 1 / (trials x max_epochs of a): the first epoch reported already matches R. Target <= 1/3.
"""

import tempfile

import numpy as np
from _record import parse_args, save
from _sweeps import Timeline, sweep_config
from sklearn.model_selection import train_test_split

from visionsweep import data
from visionsweep.config import DataConfig
from visionsweep.orchestrator import run_sweep

TARGET = 1 / 3
WITHIN = 0.003  # 0.3 points of accuracy, as a fraction
SPACE = {
    "lr": {"loguniform": [0.003, 0.3]},
    "weight_decay": {"loguniform": [1.0e-5, 1.0e-2]},
    "batch_size": {"categorical": [32, 64, 128]},
    "n_conv": {"int": [1, 3]},
    "channels": {"categorical": [8, 16, 32]},
    "dense": {"categorical": [0, 64, 128]},
    "dropout": {"uniform": [0.0, 0.5]},
}


def register_subset(source: str, train_rows: int, test_rows: int, seed: int = 0) -> str:
    """Registers `<source>_subset`: a stratified sample of the source's training rows and of its given test rows."""
    name = f"{source}_subset"
    if name in data.names():
        return name

    @data.register(name)
    def subset(config) -> data.Dataset:
        full = data.load(DataConfig(dataset=source))
        if full.test_rows is None:
            raise ValueError(f"{source} has no given test rows to sample from")
        rest = np.setdiff1d(np.arange(len(full.labels)), full.test_rows)
        pick = lambda rows, n: train_test_split(rows, train_size=n, stratify=full.labels[rows], random_state=seed)[0]  # noqa: E731
        rows = np.concatenate([pick(rest, train_rows), pick(full.test_rows, test_rows)])
        return data.Dataset(
            images=full.images[rows], labels=full.labels[rows], classes=full.classes,
            test_rows=np.arange(train_rows, train_rows + test_rows),
        )

    return name


def epochs_until(results: list[dict], target: float) -> int | None:
    """Results consumed, in arrival order, until the best value so far reaches `target`."""
    best = -np.inf
    for consumed, result in enumerate(results, start=1):
        best = max(best, result["value"])
        if best >= target:
            return consumed
    return None


def main():
    args = parse_args(__doc__, lambda parser: parser.add_argument("--seed", type=int, default=1, help="both searches' seed"))
    if args.quick:
        dataset, trials, epochs = "digits", 1, 2
    else:
        if "fashion_mnist" not in data.names():
            raise SystemExit("asha_efficiency needs the fashion_mnist dataset (issue 3); run --quick for digits")
        # 2,000 + 1,000 validation rows (val_fraction of the non-test rows) + 1,000 test rows.
        dataset, trials, epochs = register_subset("fashion_mnist", 3000, 1000), 12, 9
    common = {
        "data": {"dataset": dataset, "val_fraction": 1 / 3},
        "space": SPACE,
        "resources": {"cpu": 1, "concurrent": 2},
    }
    random_config = sweep_config(
        "bench-asha-random", **common, search={"sampler": "random", "trials": trials, "seed": args.seed},
        scheduler={"kind": "fifo", "max_epochs": epochs},
    )
    asha_config = sweep_config(
        "bench-asha-tpe", **common, search={"sampler": "tpe", "trials": 2 * trials, "seed": args.seed},
        scheduler={"kind": "asha", "max_epochs": epochs, "grace_period": 1, "reduction_factor": 3},
    )
    timelines = {"random": Timeline(), "tpe_asha": Timeline()}
    walls = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, config in (("random", random_config), ("tpe_asha", asha_config)):
            sweep = run_sweep(config, f"sqlite:///{folder}/mlflow.db", storage_path=f"{folder}/ray",
                              callbacks=[timelines[name]])
            walls[name] = sweep.wall_seconds

    random_results, asha_results = timelines["random"].results, timelines["tpe_asha"].results
    random_best = max(r["value"] for r in random_results)
    reached = epochs_until(asha_results, random_best - WITHIN)
    fraction = reached / len(random_results) if reached else None
    asha_best = max(r["value"] for r in asha_results)
    third = max(1, len(random_results) // 3)  # the target budget: what each search had found after that many epochs
    best_within = lambda results, n: max(r["value"] for r in results[:n])  # noqa: E731
    save(
        args,
        "asha_efficiency",
        {
            "measures": "epochs TPE+ASHA needs to come within 0.3 points of random search's best / random's epochs",
            "headline": (f"{fraction:.3f} ({reached} of {len(random_results)} epochs)" if reached
                         else f"not reached: best {asha_best:.4f} vs random {random_best:.4f}"),
            "target": "<= 0.333",
            "met": fraction is not None and fraction <= TARGET,
            "runs": f"1 random sweep ({trials} x {epochs} epochs) + 1 TPE+ASHA sweep ({2 * trials} trials), one seed each",
            "dataset": dataset,
            "seed": args.seed,
            "best_val_after_a_third_of_random_epochs": {
                "epochs": third,
                "random": best_within(random_results, third),
                "tpe_asha": best_within(asha_results, third),
            },
            "asha_epoch_fraction": round(fraction, 4) if fraction else None,
            "random": {
                "best_val_accuracy": random_best,
                "epochs": len(random_results),
                "epochs_until_its_best": epochs_until(random_results, random_best),
                "wall_seconds": round(walls["random"], 1),
            },
            "tpe_asha": {
                "best_val_accuracy": asha_best,
                "epochs": len(asha_results),
                "epochs_until_within_0.3_points": reached,
                "trials_run_to_max_epochs": sum(
                    1 for r in asha_results if r["epoch"] == epochs
                ),
                "wall_seconds": round(walls["tpe_asha"], 1),
            },
        },
        summary={"asha_epoch_fraction": round(fraction, 4) if fraction else None},
    )


if __name__ == "__main__":
    main()
