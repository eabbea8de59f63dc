"""Your own training function, in a package outside src/ (examples/byo), as a sweep from Python on real Ray
and real MLflow: trials tracked with their predictions, ASHA's stops told to Optuna as PRUNED, an ensemble
that names the trials which kept no predictions, the best model promoted and predicting through the builder the
sweep names, and os.environ as it was."""

import csv
import os
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

import visionsweep
from support.stores import sqlite_store
from visionsweep import data, record, tracking
from visionsweep.config import parse_config

pytestmark = pytest.mark.integration

BYO = Path(__file__).resolve().parents[2] / "examples" / "byo"
SWEEP = {
    "name": "it-byo",
    "trainable": "byo.train:train",
    "model": "byo.model:small_cnn",  # the builder train() uses: promote and predict rebuild its model
    # lr 1e-4 barely learns in an epoch: ASHA stops such trials at their first rung.
    "space": {"lr": {"categorical": [0.0001, 0.05, 0.2]}, "keep_predictions": {"categorical": [True, False]},
              "width": {"categorical": [8]}},
    "search": {"sampler": "grid", "trials": 6, "seed": 0},
    "scheduler": {"max_epochs": 3, "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpu": 1, "concurrent": 2, "max_failures": 0},
}


def test_a_training_function_of_your_own_from_python(local_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(BYO)  # as a notebook beside its package: a dict config finds the package here
    environment = dict(os.environ)
    uri = sqlite_store(tmp_path)
    result = visionsweep.run(SWEEP, overrides=["tracking.batch_seconds=0"], tracking_uri=uri,
                             storage_path=str(tmp_path / "ray"))
    assert dict(os.environ) == environment

    client = MlflowClient(uri)
    assert client.get_run(result.sweep_run_id).info.status == "FINISHED" and result.status == "FINISHED"
    assert len(result.trials) == 6 and set(result.trials["outcome"]) <= {"complete", "pruned"}
    best = result.trials.loc[result.trials["run_id"] == result.best_run_id].iloc[0]
    assert result.best_value == best["best_val_accuracy"] == result.trials["best_val_accuracy"].max() > 0.5

    runs = tracking.trial_runs(client, result.sweep_run_id)
    kept = [r for r in runs if r.data.params["keep_predictions"] == "True"]
    dropped = [r for r in runs if r.data.params["keep_predictions"] == "False"]
    assert len(kept) == len(dropped) == 3
    for run in runs:
        assert run.info.status == "FINISHED" and "best_val_accuracy" in run.data.metrics
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == list(range(1, len(history) + 1))
    for run in kept:
        assert run.data.tags[record.TAG_PREDICTIONS] == "stored" and "test_accuracy" in run.data.metrics
        stored = tracking.load_artifact_npz(client, run.info.run_id, "predictions.npz")
        assert stored["val_probs"].shape[1] == stored["test_probs"].shape[1] == 10
        assert "trained_model/weights.pt" in {a.path for a in client.list_artifacts(run.info.run_id, "trained_model")}
    for run in dropped:
        assert run.data.tags[record.TAG_PREDICTIONS] == "none" and "test_accuracy" not in run.data.metrics

    pruned = [r for r in runs if r.data.tags[record.TAG_OUTCOME] == "pruned"]
    assert pruned, "ASHA with reduction factor 2 must stop the lr 1e-4 trials"
    states = [t.state for t in result.sweep.study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(pruned)

    table = visionsweep.ensemble(result.sweep_run_id, top_k=["1", "100%"], tracking_uri=uri)
    assert table.rows[-1]["members"] == 3
    assert table.left_out == sorted(r.info.run_name for r in dropped)
    assert "left out, no stored predictions (3)" in table.format()
    assert dict(os.environ) == environment

    # The best trial that kept its model, rebuilt from the named builder: its predictions are the stored ones.
    best = max(kept, key=lambda run: run.data.metrics["best_val_accuracy"]).info.run_id
    visionsweep.promote(run=best, name="byo-train", tracking_uri=uri)
    split = tracking.load_artifact_npz(client, result.sweep_run_id, "split.npz")
    images = data.load(parse_config(SWEEP).data).images[split["test"][:8]]
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(pngs / f"{index:02d}.png")
    predicted, failures = visionsweep.predict("models:/byo-train@champion", [str(pngs)],
                                              output=str(tmp_path / "out.csv"), tracking_uri=uri)
    assert predicted == 8 and not failures
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    expected = tracking.load_artifact_npz(client, best, "predictions.npz")["test_probs"][:8]
    np.testing.assert_allclose([[float(row[f"p_{c}"]) for c in range(10)] for row in rows], expected, atol=1e-5)
    assert dict(os.environ) == environment
