"""Rare labels: today's multi-label defaults against the new ones, on skewed Fashion-MNIST mosaics, in one run.

Measures: two sweeps of the same trials (same space, same sampler seed, same split) on `fashion_mosaic` with
`mosaic_skew: true` (2x2 mosaics of Fashion-MNIST images whose tile classes are drawn with weights spanning
100x: label frequencies span about 75x, the rarest label on about 0.8% of the images). The arms differ only
in the recipe:
    before: BCE, every label decided at 0.5 (train.threshold: fixed, the default until now)
    after:  the new defaults: BCE, and a threshold per label chosen together among the validation
            probabilities to maximise micro-F1, each label keeping its surest positive row (train.threshold:
            micro_f1). The asymmetric loss, tried as the after arm on 2026-12-03, lowered micro-F1 (0.853 with
            micro_f1 thresholds, 0.829 with per_class ones) and is not a default.
What the thresholds alone bring is measured too, without more sweeps: each arm's best trial's stored
predictions decided again with each tuned method (per_class, micro_f1), thresholds tuned on its validation rows.
Each arm's best trial by validation micro-F1 (what a user picks) is scored on the test rows, as logged:
    skewed_macro_f1_gain = test macro-F1 (after) - test macro-F1 (before)
plus each arm's micro-F1, per-label F1, the rarest label's F1 and the labels it never predicts.
Machine: the project's shared machine (2 cores, no GPU); the load average at the end is recorded, since
other work on the machine slows the sweeps but does not change the scores (seeded).
Runs: one run, one seed; each sweep 2 trials of 6 epochs (--quick: digits_mosaic, 1 trial of 1 epoch per
arm, checks that the script works). fp32: bf16 pays only on CPUs with bfloat16 units; on 2026-12-03 16:22 the
machine's CPU listed no AVX-512 flags and a bf16 step of the 3-layer CNN took 4.6x its fp32 time.
Target: every label's test F1 above 0 (after), macro-F1 up by at least 0.05, micro-F1 no lower.
"""

import tempfile
import time

from _record import parse_args, save
from _sweeps import sweep_config

import numpy as np
from mlflow.tracking import MlflowClient

from visionsweep import data, metrics, record, tracking
from visionsweep.orchestrator import run_sweep
from visionsweep.trainables import PREDICTIONS_FILE

TARGET_GAIN = 0.05  # macro-F1, after - before
ARMS = {  # each arm's recipe, on top of the sweep's
    "before": {"threshold": "fixed"},  # today's defaults: BCE, every label at 0.5
    "after": {},  # the defaults
}


def base_sections(quick: bool) -> dict:
    if quick:
        return {
            "data": {"dataset": "digits_mosaic", "mosaic_images": 400, "mosaic_skew": True},
            "model_params": {"channels": 8, "dense": 16},
            "space": {"lr": {"categorical": [0.05]}},
            "search": {"sampler": "random", "trials": 1, "metric": "val_micro_f1", "seed": 0},
            "scheduler": {"kind": "fifo", "max_epochs": 1},
            "resources": {"cpu": 1, "concurrent": 1},
        }
    if "fashion_mosaic" not in data.names():
        raise SystemExit("rare_labels needs the fashion_mosaic dataset")
    return {
        # 8,000 mosaics: 4,800 training, 1,200 validation and 2,000 test rows (test tiles from Fashion-MNIST's
        # test images); the rarest label is on about 0.8% of them
        "data": {"dataset": "fashion_mosaic", "mosaic_images": 8000, "mosaic_skew": True, "test_fraction": 0.25},
        "model_params": {"n_conv": 2, "channels": 16, "dense": 64, "batchnorm": True},
        "train": {"batch_size": 64, "schedule": "onecycle", "precision": "fp32"},
        "space": {"lr": {"categorical": [0.05, 0.2]}},  # one-cycle peak, per optimizer step
        "search": {"sampler": "grid", "trials": 2, "metric": "val_micro_f1", "seed": 0},
        "scheduler": {"kind": "fifo", "max_epochs": 6},
        "resources": {"cpu": 1, "concurrent": 2},
    }


def best_trial_scores(client, sweep_run_id: str, classes: list[str]) -> dict:
    """The logged test figures of the sweep's best trial by validation micro-F1."""
    run = tracking.trial_runs(client, sweep_run_id, order_by=["metrics.best_val_micro_f1 DESC"])[0]
    logged = run.data.metrics
    return {
        "run_id": run.info.run_id,
        "trial_params": dict(run.data.params),
        "val_micro_f1": logged["best_val_micro_f1"],
        "test_micro_f1": logged["test_micro_f1"],
        "test_macro_f1": logged["test_macro_f1"],
        "test_f1": {c: logged[f"test_f1_{metrics.metric_name(c)}"] for c in classes},
        "thresholds": {c: logged[f"threshold_{metrics.metric_name(c)}"] for c in classes},
        "never_predicted": [c for c in run.data.tags.get(record.TAG_NEVER_PREDICTED, "").split(", ") if c],
    }


def redecided(client, sweep_run_id: str, trial_run_id: str, classes: list[str]) -> dict:
    """A trial's stored test predictions decided with thresholds tuned on its validation rows, by each method."""
    split = tracking.load_artifact_npz(client, sweep_run_id, "split.npz")
    stored = tracking.load_artifact_npz(client, trial_run_id, PREDICTIONS_FILE)
    figures = {}
    for how in ("per_class", "micro_f1"):
        thresholds = metrics.tune_thresholds(stored["val_probs"], split["val_labels"], how)
        scores = metrics.multilabel_scores(stored["test_probs"], split["test_labels"], "test_", thresholds, classes)
        figures[how] = {"test_micro_f1": scores["test_micro_f1"], "test_macro_f1": scores["test_macro_f1"],
                        "test_f1": {c: scores[f"test_f1_{metrics.metric_name(c)}"] for c in classes},
                        "never_predicted": metrics.never_predicted(stored["test_probs"], classes, thresholds)}
    return figures


def main():
    args = parse_args(__doc__)
    sections = base_sections(args.quick)
    dataset = data.load(sweep_config("probe", data=sections["data"]).data)
    counts = dataset.labels.sum(axis=0)
    classes = [str(c) for c in dataset.classes]
    rarest = classes[int(counts.argmin())]
    results = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        for arm, recipe in ARMS.items():
            config = sweep_config(f"bench-rare-{arm}", **{**sections, "train": {**sections.get("train", {}), **recipe}})
            sweep = run_sweep(config, uri, storage_path=f"{folder}/ray")
            client = MlflowClient(uri)
            results[arm] = {"recipe": recipe, "sweep_seconds": round(sweep.wall_seconds, 1),
                            **best_trial_scores(client, sweep.sweep_run_id, classes)}
            results[arm]["redecided"] = redecided(client, sweep.sweep_run_id, results[arm]["run_id"], classes)
    before, after = results["before"], results["after"]
    gain = after["test_macro_f1"] - before["test_macro_f1"]
    met = (min(after["test_f1"].values()) > 0 and gain >= TARGET_GAIN
           and after["test_micro_f1"] >= before["test_micro_f1"])
    headline = (f"macro-F1 {before['test_macro_f1']:.3f} -> {after['test_macro_f1']:.3f} ({gain:+.3f}), micro-F1 "
                f"{before['test_micro_f1']:.3f} -> {after['test_micro_f1']:.3f}, rarest label ({rarest}) F1 "
                f"{before['test_f1'][rarest]:.3f} -> {after['test_f1'][rarest]:.3f}; labels never predicted "
                f"{len(before['never_predicted'])} -> {len(after['never_predicted'])}; BCE with micro_f1 thresholds "
                f"alone: macro-F1 {before['redecided']['micro_f1']['test_macro_f1']:.3f}, micro-F1 "
                f"{before['redecided']['micro_f1']['test_micro_f1']:.3f}")
    save(
        args,
        "rare_labels",
        {
            "measures": "test figures of each arm's best trial by validation micro-F1, as logged to MLflow",
            "headline": headline,
            "target": "every label's F1 > 0, macro-F1 +0.05, micro-F1 no lower",
            "met": met,
            "runs": f"{len(ARMS)} sweeps of {sections['search']['trials']} trials x {sections['scheduler']['max_epochs']} "
                    f"epochs ({sections['data']['dataset']}), one seed",
            "dataset": sections["data"],
            "label_counts": dict(zip(classes, counts.tolist())),
            "label_frequency_span": round(float(counts.max() / max(counts.min(), 1)), 1),
            "rarest_label": rarest,
            "wall_seconds": round(time.monotonic() - started, 1),
            "arms": results,
        },
        summary={"skewed_macro_f1_gain": round(gain, 4)},
    )


if __name__ == "__main__":
    main()
