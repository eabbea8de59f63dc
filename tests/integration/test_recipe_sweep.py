"""Repeats, k-fold cross-validation, early stopping inside a trial, named spaces and the coordinate strategy on
real Ray and real MLflow."""

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

from support.stores import sqlite_store
from visionsweep import tracking
from visionsweep.config import parse_config
from visionsweep.ensemble import run_ensemble
from visionsweep.ensemble._members import load_members, sweep_members
from visionsweep.orchestrator import run_sweep
from visionsweep.outcome import Outcome
from visionsweep.record import PREDICTIONS_ARTIFACT, SPLIT_ARTIFACT

pytestmark = pytest.mark.integration


def test_repeats_and_early_stopping_in_a_named_space(local_ray, tmp_path):
    uri = sqlite_store(tmp_path)
    config = parse_config({
        "name": "it-repeats",
        "space": ["optimizers", {"lr": {"loguniform": [0.01, 0.1]}}],
        # No epoch after the first can improve by 0.5: every trial ends itself after epoch 2.
        "train": {"early_stopping_patience": 1, "early_stopping_min_delta": 0.5},
        "model_params": {"channels": 8, "n_conv": 1},
        "search": {"sampler": "random", "trials": 3, "repeats": 2},
        "scheduler": {"kind": "asha", "max_epochs": 4, "grace_period": 3},
    })
    result = run_sweep(config, uri, storage_path=str(tmp_path / "ray"))
    client = MlflowClient(uri)
    assert [r.outcome for r in result.records] == [Outcome.COMPLETE] * 3  # ended by patience, not pruned
    assert [t.state for t in result.study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for record in result.records:
        assert record.epochs == 2
        accuracy = client.get_metric_history(record.run_id, "val_accuracy")
        spread = client.get_metric_history(record.run_id, "val_accuracy_std")
        assert [m.step for m in accuracy] == [m.step for m in spread] == [1, 2]
        assert all(0 <= m.value < 0.5 for m in spread)
        assert ("momentum" in record.params) == (record.params["optimizer"] in ("sgd", "rmsprop"))


def test_coordinate_strategy_carries_the_best_value_forward(local_ray, tmp_path):
    uri = sqlite_store(tmp_path)
    config = parse_config({
        "name": "it-coordinate",
        "model_params": {"channels": 8, "n_conv": 1},
        "search": {"strategy": "coordinate", "values": {"lr": [0.001, 0.2], "batch_size": [32, 64]},
                   "order": ["lr", "batch_size"]},
        "scheduler": {"kind": "fifo", "max_epochs": 2},
    })
    result = run_sweep(config, uri, storage_path=str(tmp_path / "ray"))
    assert result.status == "FINISHED" and result.study is None
    trials = sorted(tracking.trial_runs(MlflowClient(uri), result.sweep_run_id), key=lambda r: r.info.start_time)
    params = [r.data.params for r in trials]
    # batch_size 64 is the default: the winning lr already scored it, so only 32 runs in the second stage.
    assert sorted(map(str, params[:2])) == ["{'lr': '0.001'}", "{'lr': '0.2'}"] and len(params) == 3  # two at once
    scores = {r.params["lr"]: r.best_val for r in result.records if "batch_size" not in r.params}
    assert params[2] == {"lr": str(max(scores, key=lambda lr: scores[lr])), "batch_size": "32"}


def test_folds_report_the_mean_and_store_out_of_fold_predictions_the_ensemble_fits_on(local_ray, tmp_path):
    uri = sqlite_store(tmp_path)
    config = parse_config({
        "name": "it-folds",
        "data": {"folds": 3},
        "space": {"lr": {"loguniform": [0.01, 0.1]}},
        "model_params": {"channels": 8, "n_conv": 1},
        "search": {"sampler": "random", "trials": 2},
        "scheduler": {"kind": "fifo", "max_epochs": 2},
    })
    result = run_sweep(config, uri, storage_path=str(tmp_path / "ray"))
    client = MlflowClient(uri)
    split = tracking.load_artifact_npz(client, result.sweep_run_id, SPLIT_ARTIFACT)
    development = len(split["train"]) + len(split["val"])
    assert np.bincount(split["folds"]).tolist() == [509, 509, 509]  # 1527 training + validation rows of digits
    for record in result.records:
        assert record.outcome is Outcome.COMPLETE
        assert [m.step for m in client.get_metric_history(record.run_id, "val_accuracy_std")] == [1, 2]
        stored = tracking.load_artifact_npz(client, record.run_id, PREDICTIONS_ARTIFACT)
        assert stored["oof_probs"].shape == (development, 10)
        np.testing.assert_array_equal(stored["val_probs"], stored["oof_probs"][len(split["train"]):])
        np.testing.assert_allclose(stored["oof_probs"].sum(axis=1), 1, atol=1e-5)  # every row predicted once
        out_of_fold = (stored["oof_probs"].argmax(axis=1) == split["development_labels"]).mean()
        best = record.metric_by_epoch[int(stored["epoch"])]
        assert out_of_fold == pytest.approx(best, abs=1e-9), "the reported score is the mean over equal folds"

    members = load_members(client, *sweep_members(client, result.sweep_run_id))
    assert members.val_probs.shape == (2, development, 10)
    np.testing.assert_array_equal(members.val_labels, split["development_labels"])
    table = run_ensemble(client, result.sweep_run_id, top_k=["1", "2"])
    assert len(table.rows) == 2
