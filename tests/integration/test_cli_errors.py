"""A mistaken command gets one line that says what is wrong and what to do, and a non-zero exit; nothing it
would have written is left half-done. Against a real sqlite MLflow store holding runs with the tags a sweep
writes (no Ray), one real registered model, and a real attempt at a tracking server that does not answer."""

import io
import json
import time

import numpy as np
import pytest
import torch
from mlflow.entities import Metric
from PIL import Image

from support.servers import free_port
from support.stores import sqlite_store
from visionsweep import models, record, registry, tracking
from visionsweep.cli import main

pytestmark = pytest.mark.integration

CLASSES = ["a", "b"]
SHAPE = {"num_classes": 2, "in_channels": 1, "image_size": 8, "multilabel": False}
PARAMS = {"n_conv": 1, "channels": 4, "dense": 0}


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sweep run and its trial run, as a sweep writes them, and the trial promoted as models:/cli-model@champion."""
    folder = tmp_path_factory.mktemp("store")
    uri = sqlite_store(folder)
    client, experiment = tracking.connect(uri, "cli-errors")
    sweep = client.create_run(experiment, tags={record.TAG_KIND: "sweep", "visionsweep.metric": "val_accuracy",
                                                "visionsweep.mode": "max"}).info.run_id
    trial = client.create_run(experiment, tags={"mlflow.parentRunId": sweep, record.TAG_KIND: "trial"}).info.run_id
    model = models.create("cnn", **SHAPE, **PARAMS).eval()
    (folder / "trial" / "trained_model").mkdir(parents=True)
    torch.save(model.state_dict(), folder / "trial" / "trained_model" / "weights.pt")
    (folder / "trial" / "trained_model" / "model.json").write_text(json.dumps(
        {"model": "cnn", "params": PARAMS, "shape": SHAPE, "classes": CLASSES,
         "normalization": {"mean": [0.5], "std": [0.25]}}))
    probs = np.full((4, 2), 0.5, np.float32)
    (folder / "trial" / "predictions.npz").write_bytes(npz(val_probs=probs, test_probs=probs, classes=np.array(CLASSES)))
    client.log_artifacts(trial, str(folder / "trial"))
    client.log_batch(trial, metrics=[Metric("test_accuracy", 0.5, int(time.time() * 1000), 0)])
    registry.promote(client, registry.trial_candidate(client, trial), "cli-model")
    for index in range(3):
        Image.fromarray(np.full((8, 8), 40 * index, np.uint8)).save(folder / f"{index}.png")
    (folder / "broken").mkdir()
    (folder / "broken" / "x.png").write_bytes(b"not a png")
    return {"uri": uri, "sweep": sweep, "trial": trial, "folder": folder}


def one_line_error(capsys, argv, code=1) -> str:
    """Runs the command; it must exit `code` with exactly one line on stderr, beginning `error:`."""
    assert main(argv) == code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(("error:", "config error:")), lines
    return lines[0]


def test_ensemble_of_a_sweep_id_that_names_no_run(store, capsys):
    line = one_line_error(capsys, ["ensemble", "--sweep", "0123456789abcdef0123456789abcdef", "--tracking-uri", store["uri"]])
    assert "no run 0123456789abcdef0123456789abcdef" in line and store["uri"] in line and "--experiment" in line


def test_ensemble_of_a_trials_run_id_names_its_sweep(store, capsys):
    line = one_line_error(capsys, ["ensemble", "--sweep", store["trial"], "--tracking-uri", store["uri"]])
    assert f"run {store['trial']} is a trial, not a sweep" in line and f"--sweep {store['sweep']}" in line


def test_report_of_a_malformed_sweep_id(store, capsys, tmp_path):
    line = one_line_error(capsys, ["report", "--sweep", "badid", "--tracking-uri", store["uri"],
                                   "--output", str(tmp_path / "r.html")])
    assert "no run badid" in line
    assert not (tmp_path / "r.html").exists()


def test_predict_into_a_folder_that_does_not_exist(store, capsys):
    line = one_line_error(capsys, ["predict", "--model", "models:/cli-model@champion", str(store["folder"] / "0.png"),
                                   "--output", "/nonexistent/dir/x.csv", "--tracking-uri", store["uri"]], code=2)
    assert "--output /nonexistent/dir/x.csv: no folder /nonexistent/dir" in line


def test_predict_of_a_path_that_does_not_exist_writes_nothing(store, capsys, tmp_path):
    output = tmp_path / "out.csv"
    line = one_line_error(capsys, ["predict", "--model", "models:/cli-model@champion", str(store["folder"] / "0.png"),
                                   str(tmp_path / "missing.png"), "--output", str(output),
                                   "--tracking-uri", store["uri"]], code=2)
    assert f"{tmp_path / 'missing.png'}: no such file or folder" in line and not output.exists()


def test_predict_with_no_readable_input_exits_non_zero_and_keeps_the_old_output(store, capsys, tmp_path):
    output = tmp_path / "out.csv"
    output.write_text("yesterday's predictions\n")
    line = one_line_error(capsys, ["predict", "--model", "models:/cli-model@champion", str(store["folder"] / "broken"),
                                   "--output", str(output), "--tracking-uri", store["uri"]])
    assert "none of the 1 image files could be read" in line and "x.png" in line
    assert output.read_text() == "yesterday's predictions\n"
    line = one_line_error(capsys, ["predict", "--model", "models:/cli-model@champion", str(tmp_path),
                                   "--output", str(output), "--tracking-uri", store["uri"]], code=2)
    assert f"{tmp_path}: no image files" in line
    line = one_line_error(capsys, ["predict", "--model", "models:/no-such-model@champion", str(store["folder"] / "0.png"),
                                   "--output", str(output), "--tracking-uri", store["uri"]])
    assert "no-such-model" in line and output.read_text() == "yesterday's predictions\n"
    assert main(["predict", "--model", "models:/cli-model@champion", str(store["folder"] / "0.png"),
                 str(store["folder"] / "broken"), "--output", str(output), "--tracking-uri", store["uri"]]) == 0
    assert "1 images predicted, 1 unreadable" in capsys.readouterr().err
    assert len(output.read_text().splitlines()) == 3  # header, one prediction, one error row


@pytest.mark.parametrize("argv", [
    ["ensemble", "--experiment", "cli-errors"],
    ["report", "--experiment", "cli-errors"],
    ["promote", "--run", "0123456789abcdef0123456789abcdef", "--name", "m"],
    ["resume", "0123456789abcdef0123456789abcdef"],
], ids=lambda argv: argv[0])
def test_an_unreachable_tracking_server_is_one_line(argv, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a real attempt, bounded: seconds, not minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    line = one_line_error(capsys, [*argv, "--tracking-uri", uri])
    assert f"cannot reach the MLflow server at {uri}" in line and "--tracking-uri" in line


def test_predict_and_run_against_an_unreachable_tracking_server(store, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    uri = f"http://127.0.0.1:{free_port()}"
    output = tmp_path / "out.csv"
    line = one_line_error(capsys, ["predict", "--model", "models:/cli-model@champion", str(store["folder"] / "0.png"),
                                   "--output", str(output), "--tracking-uri", uri])
    assert f"cannot reach the MLflow server at {uri}" in line and not output.exists()
    (tmp_path / "sweep.yaml").write_text("name: unreachable\nsearch: {trials: 1}\n")
    line = one_line_error(capsys, ["run", str(tmp_path / "sweep.yaml"), "--tracking-uri", uri])
    assert f"cannot reach the MLflow server at {uri}" in line
