"""A multi-label sweep end to end on digits_mosaic (real Ray, real MLflow), searching augmentation,
imbalance handling and thresholds, then an ensemble over it; and a user folder with a broken file."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from support.stores import sqlite_store
from visionsweep import metrics, record, report, tracking
from visionsweep.config import parse_config
from visionsweep.ensemble import run_ensemble
from visionsweep.orchestrator import run_sweep
from visionsweep.outcome import Outcome
from visionsweep.report import _figures as report_figures

pytestmark = pytest.mark.integration

TRIALS = 6
CLASSES = [str(d) for d in range(10)]
SWEEP = {
    "name": "it-multilabel",
    "data": {"dataset": "digits_mosaic", "mosaic_images": 1200, "mosaic_skew": True},
    "model": "cnn",
    "model_params": {"channels": 16, "dense": 32},
    "train": {"lr": 0.05},
    "space": {
        "augment.hflip": {"categorical": [0.0, 0.5]},
        "augment.mixup": {"categorical": [0.0, 0.4]},
        "augment.rotation": {"uniform": [0, 15]},
        "class_weights": {"categorical": ["none", "balanced"]},
        "oversample": {"uniform": [0.0, 1.0]},
        "threshold": {"categorical": ["global", "per_class"]},
    },
    "search": {"sampler": "random", "trials": TRIALS, "metric": "val_micro_f1", "seed": 2},
    "scheduler": {"kind": "fifo", "max_epochs": 3},
    "resources": {"cpu": 1, "concurrent": 2},
}


def test_multilabel_sweep_and_ensemble(local_ray, tmp_path):
    uri = sqlite_store(tmp_path)
    result = run_sweep(parse_config(SWEEP), uri, storage_path=str(tmp_path / "ray"))
    assert result.status == "FINISHED" and result.count(Outcome.COMPLETE) == TRIALS
    client = MlflowClient(uri)
    split = tracking.load_artifact_npz(client, result.sweep_run_id, "split.npz")
    test_labels = split["test_labels"]
    assert test_labels.ndim == 2 and test_labels.dtype == np.uint8 and test_labels.shape[1] == 10
    assert split["val_labels"].sum(axis=0).min() > 0  # the rarest digit reaches validation rows too

    for run in tracking.trial_runs(client, result.sweep_run_id):
        logged = run.data.metrics
        assert {"val_micro_f1", "val_macro_f1", "val_subset_accuracy", "val_hamming_loss", "val_f1_9",
                "val_precision_0", "val_recall_5", "best_val_micro_f1", "test_micro_f1"} <= set(logged)
        assert set(run.data.params) == set(SWEEP["space"])
        stored = tracking.load_artifact_npz(client, run.info.run_id, "predictions.npz")
        thresholds = stored["thresholds"]
        assert thresholds.shape == (10,) and np.all((thresholds > 0) & (thresholds < 1))
        if run.data.params["threshold"] == "global":
            assert len(set(thresholds.tolist())) == 1
        assert logged["threshold_3"] == pytest.approx(float(thresholds[3]))
        # The thresholds chosen on validation rows are the ones applied to the test rows.
        rescored = metrics.multilabel_scores(stored["test_probs"], test_labels, "test_", threshold=thresholds)
        assert logged["test_micro_f1"] == pytest.approx(rescored["test_micro_f1"])
        assert logged["best_val_micro_f1"] == pytest.approx(
            metrics.multilabel_scores(stored["val_probs"], split["val_labels"], threshold=thresholds)["micro_f1"])
        # Per class at the chosen epoch, with the same thresholds: macro-F1 is their mean.
        per_class = metrics.multilabel_scores(stored["test_probs"], test_labels, "test_", thresholds, classes=CLASSES)
        assert {k: logged[k] for k in per_class} == per_class
        assert logged["test_macro_f1"] == pytest.approx(np.mean([logged[f"test_f1_{c}"] for c in CLASSES]))
        assert client.get_metric_history(run.info.run_id, "test_f1_9")[0].step == logged["best_epoch"]
        never = metrics.never_predicted(stored["test_probs"], CLASSES, thresholds)
        assert run.data.tags.get(record.TAG_NEVER_PREDICTED, "") == ", ".join(never)
        assert all(logged[f"test_f1_{c}"] == 0 for c in never)
    best = result.best("max")
    assert best.best_val > 0.5  # far above chance: the tiles' digits are learnt

    table = run_ensemble(client, result.sweep_run_id, ["1", "3", "100%"])
    assert table.measure == "micro_f1"
    assert table.rows[0]["soft"] == pytest.approx(best.test_scores["test_micro_f1"])
    assert table.rows[0]["hard"] == pytest.approx(best.test_scores["test_micro_f1"])
    assert all(0 < row["soft"] <= 1 and 0 < row["hard"] <= 1 for row in table.rows)
    assert client.get_run(table.run_id).info.status == "FINISHED"
    assert isinstance(table.final["never_predicted"], list)

    # The report judges the best trial by its own thresholds: its per-class figures are the logged ones.
    facts = report.collect(client, result.sweep_run_id)
    best_run = client.get_run(facts.best_trial.run_id)
    rows = report_figures.per_class_errors(facts.test_labels, facts.best_test_probs, facts.classes,
                                           facts.best_thresholds)
    for row in rows:
        for column, measure in (("precision", "precision"), ("recall", "recall"), ("F1", "f1")):
            assert row[column] == best_run.data.metrics[f"test_{measure}_{row['class']}"]
        assert row["threshold"] == pytest.approx(best_run.data.metrics[f"threshold_{row['class']}"])
    page = report.render(facts)
    first = rows[0]["class"]
    assert "".join(f'<td class="">{best_run.data.metrics[f"test_{m}_{first}"]:.4f}</td>'
                   for m in ("precision", "recall", "f1")) in page
    lost = best_run.data.tags.get(record.TAG_NEVER_PREDICTED) or "none: every class is given to some test image"
    assert f"<th>never predicted by the best trial</th><td>{lost}</td>" in page
    # Multi-label error analysis and Grad-CAM per label, on the final ensemble's best member.
    for heading in ("Wrong labels per class", "Labels confused", "Rarest labels", "Class activation maps"):
        assert f"<h2>{heading}</h2>" in page
    explained = facts.explanation
    assert explained is not None, facts.notes
    assert {e.label for e in explained.examples} <= set(range(len(facts.classes)))
    assert all(e.label == e.cls for e in explained.examples)  # per label: the map is for that label
    assert "Grad-CAM of trial " in page and "for each label" in page


def test_user_folder_with_a_broken_file_logs_it(local_ray, tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        for i in range(20):
            shade = 40 if cls == "a" else 200
            Image.fromarray(rng.integers(shade - 30, shade + 30, (12, 12, 3), dtype=np.uint8)).save(
                tmp_path / "photos" / cls / f"{i}.jpg")
    (tmp_path / "photos" / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    config = parse_config({
        "name": "it-folder",
        "data": {"dataset": str(tmp_path / "photos"), "image_size": 8, "on_bad_image": "skip",
                 "cache_dir": str(tmp_path / "cache"), "val_fraction": 0.25, "test_fraction": 0.25},
        "model_params": {"n_conv": 1, "channels": 8},
        "search": {"trials": 1},
        "scheduler": {"kind": "fifo", "max_epochs": 1},
    })
    uri = sqlite_store(tmp_path)
    result = run_sweep(config, uri, storage_path=str(tmp_path / "ray"))
    assert result.count(Outcome.COMPLETE) == 1
    client = MlflowClient(uri)
    sweep = client.get_run(result.sweep_run_id)
    assert sweep.data.params["data.bad_images"] == "1"
    bad = client.download_artifacts(result.sweep_run_id, "bad_images.txt", str(tmp_path))
    assert "broken.jpg" in open(bad).read()
    summary = client.download_artifacts(result.sweep_run_id, "data_summary.json", str(tmp_path))
    assert '"colour_files": 40' in open(summary).read()
