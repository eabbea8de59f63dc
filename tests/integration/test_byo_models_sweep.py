"""A family of models in one sweep: the CNN, a user's model by import path and a timm model (real Ray, real
sqlite MLflow); the user's model promoted, predicted in a fresh process and served over HTTP without its
source folder."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import ray
from mlflow.tracking import MlflowClient
from PIL import Image

from support.servers import LOCAL_RAY, free_port, wait_until_serving
from support.stores import sqlite_store
from visionsweep import data, models, tracking
from visionsweep.cli import main
from visionsweep.config import ConfigError, parse_config
from visionsweep.orchestrator import run_sweep
from visionsweep.orchestrator._sweep import connect_ray, user_code

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
USER_MODEL = "byo_it_models:small_resnet"  # examples/byo/my_models.py, copied under a name no other test uses
SWEEP = {
    "name": "it-byo",
    "model": {"categorical": ["cnn", USER_MODEL, "timm/test_resnet"]},
    "space": {
        "width": {"categorical": [8], "when": {"model": USER_MODEL}},
        "blocks": {"categorical": [1], "when": {"model": USER_MODEL}},
        "drop_rate": {"categorical": [0.1], "when": {"model": "timm/test_resnet"}},
        "channels": {"categorical": [8], "when": {"model": "cnn"}},
    },
    "train": {"lr": 0.05},
    "search": {"sampler": "grid", "trials": 3},  # one trial per model
    "scheduler": {"kind": "fifo", "max_epochs": 2},
    "resources": {"cpu": 1, "concurrent": 2},
}


@pytest.fixture(scope="module")
def byo(local_ray, tmp_path_factory):
    """The user's module sits in a folder only this process has on sys.path: Ray's workers get it only if the
    sweep ships it. A Ray started without it is refused before any trial; the sweep then starts its own."""
    folder = tmp_path_factory.mktemp("byo")
    code = folder / "code"
    code.mkdir()
    shutil.copy(REPO / "examples" / "byo" / "my_models.py", code / "byo_it_models.py")
    sys.path.insert(0, str(code))
    try:
        config = parse_config(SWEEP)
        with pytest.raises(ConfigError, match="Ray's workers cannot import byo_it_models"):
            connect_ray(None, False, user_code(config))  # the session's Ray, started without the user's code
        ray.shutdown()
        uri = sqlite_store(folder)
        try:
            result = run_sweep(config, uri, storage_path=str(folder / "ray"))
        finally:
            ray.shutdown()
            ray.init(**LOCAL_RAY)  # the session's Ray again, for the tests after these
        client = MlflowClient(uri, registry_uri=uri)
        trials = {run.data.params["model"]: run for run in tracking.trial_runs(client, result.sweep_run_id)}
        yield {"uri": uri, "folder": folder, "code": code, "result": result, "client": client, "trials": trials}
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("byo_it_models", None)


def test_one_sweep_trains_each_model_of_the_family_and_tags_the_users_code(byo):
    result, trials = byo["result"], byo["trials"]
    assert result.status == "FINISHED" and sorted(trials) == sorted(SWEEP["model"]["categorical"])
    assert all(run.info.status == "FINISHED" and run.data.metrics["test_accuracy"] > 0.2 for run in trials.values())
    user = trials[USER_MODEL].data
    assert user.params["width"] == "8" and "channels" not in user.params  # conditional parameters, per model
    assert user.tags["visionsweep.model.import_path"] == USER_MODEL
    assert user.tags["visionsweep.model.source_sha256"] == models.user_code(USER_MODEL).sha256
    assert user.tags["visionsweep.model.source"] == str(byo["code"] / "byo_it_models.py")
    assert trials["timm/test_resnet"].data.tags["visionsweep.model"] == "timm/test_resnet"
    assert "visionsweep.model.import_path" not in trials["cnn"].data.tags


def test_a_promoted_user_model_predicts_and_serves_without_its_source_folder(byo, capsys):
    client, uri, folder = byo["client"], byo["uri"], byo["folder"]
    run_id = byo["trials"][USER_MODEL].info.run_id
    assert main(["promote", "--run", run_id, "--name", "byo", "--tracking-uri", uri]) == 0
    byo["code"].rename(folder / "code-gone")  # from here on only the registered model holds the user's code
    split = tracking.load_artifact_npz(client, byo["result"].sweep_run_id, "split.npz")
    images = data.load(parse_config(SWEEP).data).images[split["test"][:16]]
    expected = tracking.load_artifact_npz(client, run_id, "predictions.npz")["test_probs"][:16]
    pngs = folder / "pngs"
    pngs.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(pngs / f"{index:02d}.png")
    # As in an activated virtual environment: its bin first (mlflow runs `uvicorn` from PATH).
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MLFLOW_TRACKING_URI": uri,
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}

    # `visionsweep predict` in a fresh process: the user's module comes from the model (MLflow code_paths).
    done = subprocess.run([sys.executable, "-m", "visionsweep.cli", "predict", "--model", "models:/byo@champion",
                           str(pngs), "--output", str(folder / "out.csv")], env=env, cwd=folder,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader((folder / "out.csv").open()))
    probs = np.array([[float(row[f"p_{c}"]) for c in range(10)] for row in rows])
    np.testing.assert_allclose(probs, expected, atol=1e-5)

    # `mlflow models serve` answers POST /invocations with JSON-encoded images.
    port = free_port()
    log = open(folder / "serve.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/byo@champion", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )

    def stop():  # the server and its uvicorn worker: the process group it leads
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server, folder / "serve.log", stop=stop, timeout=180)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": images.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            served = np.array(json.loads(response.read())["predictions"])
        np.testing.assert_allclose(served, expected, atol=1e-5)
    finally:
        stop()
        server.wait(30)
        log.close()
