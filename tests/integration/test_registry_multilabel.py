"""A multi-label ensemble registered and predicted, on trial runs written straight to the store (no Ray):
members centred on their own thresholds, the ensemble's tuned thresholds in the model's metadata."""

import io
import json
import time

import numpy as np
import pytest
import torch
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from support.stores import sqlite_store
from visionsweep import models, record, registry, tracking
from visionsweep.ensemble import run_ensemble

pytestmark = pytest.mark.integration

CLASSES = ["a", "b", "c"]
SHAPE = {"num_classes": 3, "in_channels": 1, "image_size": 8, "multilabel": True}
PARAMS = {"n_conv": 1, "channels": 4, "dense": 0}
NORMALIZATION = {"mean": [0.4], "std": [0.3]}


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def probabilities(model, images):
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        return torch.sigmoid(model((x - 0.4) / 0.3)).numpy()


@pytest.fixture(params=["sqlite", "server"])
def store(request, tmp_path):
    # Over HTTP the registry answers alias lookups with string versions and artifacts go through the proxy.
    uri = sqlite_store(tmp_path) if request.param == "sqlite" else request.getfixturevalue("mlflow_server")
    client, experiment = tracking.connect(uri, "multilabel-registry")
    rng = np.random.default_rng(0)
    images = {part: rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8) for part in ("val", "test")}
    labels = {part: (rng.random((40, 3)) < 0.5).astype(np.uint8) for part in ("val", "test")}
    sweep = client.create_run(experiment, tags={record.TAG_KIND: "sweep", "visionsweep.metric": "val_micro_f1",
                                                "visionsweep.mode": "max"}).info.run_id
    tracking._store.log_bytes(client, sweep, "split.npz", npz(
        train=np.arange(0), val=np.arange(40), test=np.arange(40, 80), val_labels=labels["val"],
        test_labels=labels["test"], classes=np.array(CLASSES)))
    for seed, thresholds in enumerate(([0.45, 0.5, 0.55], [0.5, 0.5, 0.5], [0.52, 0.48, 0.5])):
        torch.manual_seed(seed)
        model = models.create("cnn", **SHAPE, **PARAMS).eval()
        run = client.create_run(experiment, tags={"mlflow.parentRunId": sweep, record.TAG_KIND: "trial"}).info.run_id
        folder = tmp_path / f"trial{seed}"
        (folder / "trained_model").mkdir(parents=True)
        torch.save(model.state_dict(), folder / "trained_model" / "weights.pt")
        (folder / "trained_model" / "model.json").write_text(json.dumps(
            {"model": "cnn", "params": PARAMS, "shape": SHAPE, "classes": CLASSES, "normalization": NORMALIZATION}))
        val, test = probabilities(model, images["val"]), probabilities(model, images["test"])
        (folder / "predictions.npz").write_bytes(npz(val_probs=val, test_probs=test, classes=np.array(CLASSES),
                                                     thresholds=np.array(thresholds, np.float32)))
        client.log_artifacts(run, str(folder))
        scores = {"best_val_micro_f1": 0.5 + seed / 10, "test_micro_f1": 0.4 + seed / 10}
        client.log_batch(run, metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in scores.items()])
    return client, sweep, images, tmp_path


def test_multilabel_ensemble_and_trial_reproduce_their_stored_predictions(store):
    client, sweep, images, folder = store
    table = run_ensemble(client, sweep, ["34%", "100%"], greedy_rounds=4, thresholds="per_class")
    spec = json.loads(registry._promote._download_text(client, table.run_id, record.ENSEMBLE_ARTIFACT))
    assert all(m["centre"] is not None for m in spec["members"]) and len(spec["thresholds"]) == 3

    registry.promote(client, registry.ensemble_candidate(client, table.run_id), "ml-ensemble")
    model = registry.load_model("models:/ml-ensemble@champion", client.tracking_uri, str(folder / "m1"))
    stored = tracking.load_artifact_npz(client, table.run_id, "predictions.npz")
    np.testing.assert_allclose(model.predict(images["test"]), stored["test_probs"], atol=1e-5)
    assert model.metadata.metadata["thresholds"] == pytest.approx(spec["thresholds"])

    best = tracking.trial_runs(client, sweep, order_by=["metrics.best_val_micro_f1 DESC"])[0].info.run_id
    registry.promote(client, registry.trial_candidate(client, best), "ml-trial")
    trial_model = registry.load_model("models:/ml-trial@champion", client.tracking_uri, str(folder / "m2"))
    stored = tracking.load_artifact_npz(client, best, "predictions.npz")
    np.testing.assert_allclose(trial_model.predict(images["test"]), stored["test_probs"], atol=1e-5)
    assert trial_model.metadata.metadata["thresholds"] == pytest.approx(stored["thresholds"].tolist())
