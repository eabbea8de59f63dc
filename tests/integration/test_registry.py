"""Promote, gate, ensemble and predict on a real sweep (real Ray, real sqlite MLflow store)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from support.stores import sqlite_store
from visionsweep import data, record, registry, tracking
from visionsweep.cli import main
from visionsweep.config import parse_config
from visionsweep.ensemble import run_ensemble
from visionsweep.orchestrator import run_sweep

pytestmark = pytest.mark.integration

SWEEP = {
    "name": "it-registry",
    "space": {"lr": {"loguniform": [0.002, 0.3]}, "channels": {"categorical": [8, 16]}},
    "search": {"sampler": "random", "trials": 4, "seed": 3},
    "scheduler": {"kind": "fifo", "max_epochs": 2},
    "resources": {"cpu": 1, "concurrent": 2},
}

# Run in a fresh process: load each model by alias and predict the sweep's test images.
FRESH_PROCESS = """
import json, sys
import mlflow, numpy as np
from visionsweep import data
from visionsweep.config import parse_config
uri, test_rows, sweep, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
mlflow.set_tracking_uri(uri)
images = data.load(parse_config(sweep).data).images[np.load(test_rows)]
np.savez(out, **{name: mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(images)
                 for name in ("digits", "digits-ensemble")})
"""


@pytest.fixture(scope="module")
def sweep(local_ray, tmp_path_factory):
    folder = tmp_path_factory.mktemp("registry")
    uri = sqlite_store(folder)
    result = run_sweep(parse_config(SWEEP), uri, storage_path=str(folder / "ray"))
    client = MlflowClient(uri, registry_uri=uri)
    trials = sorted(tracking.trial_runs(client, result.sweep_run_id), key=lambda r: -r.data.metrics["test_accuracy"])
    return {"uri": uri, "folder": folder, "result": result, "client": client, "trials": trials}


def stored(client, run_id):
    return tracking.load_artifact_npz(client, run_id, "predictions.npz")


def test_promoted_trial_and_ensemble_reproduce_stored_predictions_in_a_fresh_process(sweep, capsys):
    client, uri, folder = sweep["client"], sweep["uri"], sweep["folder"]
    best = sweep["trials"][0].info.run_id
    assert main(["promote", "--run", best, "--name", "digits", "--tracking-uri", uri]) == 0
    table = run_ensemble(client, sweep["result"].sweep_run_id, ["25%", "50%", "100%"], greedy_rounds=10)
    assert main(["promote", "--ensemble", table.run_id, "--name", "digits-ensemble", "--tracking-uri", uri]) == 0
    assert "as models:/digits-ensemble@champion" in capsys.readouterr().out

    split = tracking.load_artifact_npz(client, sweep["result"].sweep_run_id, "split.npz")
    np.save(folder / "test_rows.npy", split["test"])
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, uri, str(folder / "test_rows.npy"), json.dumps(SWEEP),
         str(folder / "fresh.npz")], capture_output=True, text=True, cwd=folder,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(folder / "fresh.npz") as fresh:
        np.testing.assert_allclose(fresh["digits"], stored(client, best)["test_probs"], atol=1e-5)
        np.testing.assert_allclose(fresh["digits-ensemble"], stored(client, table.run_id)["test_probs"], atol=1e-5)

    with open(client.download_artifacts(table.run_id, record.ENSEMBLE_ARTIFACT, str(folder))) as file:
        spec = json.load(file)
    version = client.get_model_version_by_alias("digits-ensemble", "champion")
    assert float(version.tags["visionsweep.test_score"]) == pytest.approx(spec["test_score"])
    assert len(spec["members"]) >= 1 and abs(sum(m["weight"] for m in spec["members"]) - 1) < 1e-6


def test_gate_refuses_a_worse_candidate_unless_forced(sweep, capsys):
    client, uri = sweep["client"], sweep["uri"]
    best, worst = sweep["trials"][0], sweep["trials"][-1]
    best_score, worst_score = best.data.metrics["test_accuracy"], worst.data.metrics["test_accuracy"]
    assert worst_score < best_score, "the sweep must produce trials of different quality"
    assert main(["promote", "--run", best.info.run_id, "--name", "gated", "--tracking-uri", uri]) == 0
    capsys.readouterr()

    assert main(["promote", "--run", worst.info.run_id, "--name", "gated", "--tracking-uri", uri]) == 1
    message = capsys.readouterr().err
    assert f"{worst_score:.4f}" in message and f"{best_score:.4f}" in message and "--force" in message
    assert client.get_model_version_by_alias("gated", "champion").run_id == best.info.run_id

    assert main(["promote", "--run", worst.info.run_id, "--name", "gated", "--force", "--tracking-uri", uri]) == 0
    assert client.get_model_version_by_alias("gated", "champion").run_id == worst.info.run_id
    # An equal score passes the gate: only a lower one is refused.
    assert main(["promote", "--run", worst.info.run_id, "--name", "gated", "--tracking-uri", uri]) == 0


def test_predict_a_folder_of_pngs_with_a_broken_one(sweep, capsys):
    client, uri, folder = sweep["client"], sweep["uri"], sweep["folder"]
    best = sweep["trials"][0].info.run_id
    assert main(["promote", "--run", best, "--name", "digits-predict", "--tracking-uri", uri]) == 0
    images = data.load(parse_config(SWEEP).data).images[:12]
    pngs = folder / "pngs" / "nested"
    pngs.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(pngs / f"{index:02d}.png")
    (pngs / "05b-broken.png").write_bytes(b"not a png at all")
    output = folder / "out.csv"
    assert main(["predict", "--model", "models:/digits-predict@champion", str(folder / "pngs"),
                 "--output", str(output), "--batch-size", "5", "--tracking-uri", uri]) == 0
    assert "12 images predicted, 1 unreadable" in capsys.readouterr().err

    rows = list(csv.DictReader(output.open()))
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == sorted([f"{i:02d}.png" for i in range(12)] + ["05b-broken.png"])
    broken = next(r for r in rows if "broken" in r["path"])
    assert broken["label"] == "" and "cannot identify image file" in broken["error"]
    good = [r for r in rows if "broken" not in r["path"]]
    probs = np.array([[float(r[f"p_{c}"]) for c in map(str, range(10))] for r in good])
    expected = registry.load_model("models:/digits-predict@champion", uri, str(folder / "model")).predict(images)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert [r["label"] for r in good] == [str(i) for i in expected.argmax(axis=1)]
    assert all(r["error"] == "" for r in good)
