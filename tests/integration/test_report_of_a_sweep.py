"""The report of a real sweep: built from MLflow alone, self-contained, logged to the sweep run."""

import json
import re

import optuna
import pytest

from visionsweep import record, tracking
from visionsweep.record import REPORT_ARTIFACT

pytestmark = pytest.mark.integration


def test_progress_lines_while_the_sweep_ran(reported_sweep):
    lines = [line for line in reported_sweep.output.splitlines() if line.startswith("[sweep] ")]
    assert lines, reported_sweep.output
    assert re.match(r"\[sweep\] 8/8 trials done: \d+ complete, \d+ pruned, \d+ failed, 0 running; best val_accuracy "
                    r"0\.\d{4} \(trial \w+\); \d+:\d\d elapsed, about 0:00 left", lines[-1]), lines[-1]
    assert f"\n{reported_sweep.report}\n" in reported_sweep.output  # the path, on a line of its own


def test_study_stored_with_the_sweep_agrees_with_mlflow(reported_sweep):
    study = tracking.load_study(reported_sweep.client, reported_sweep.sweep_run_id)
    runs = tracking.trial_runs(reported_sweep.client, reported_sweep.sweep_run_id)
    outcomes = sorted(r.data.tags[record.TAG_OUTCOME] for r in runs)
    states = {optuna.trial.TrialState.COMPLETE: "complete", optuna.trial.TrialState.PRUNED: "pruned",
              optuna.trial.TrialState.FAIL: "failed"}
    assert sorted(states[t.state] for t in study.trials) == outcomes
    assert "pruned" in outcomes  # ASHA with reduction factor 2 stops some
    for trial in study.trials:
        assert set(trial.params) == {"lr", "channels", "dropout"}
        assert trial.intermediate_values  # every epoch's score, as TPE saw it


def test_report_is_one_self_contained_page_logged_to_the_sweep(reported_sweep):
    page = reported_sweep.report.read_text()
    client, sweep = reported_sweep.client, reported_sweep.sweep_run_id
    assert REPORT_ARTIFACT in {a.path for a in client.list_artifacts(sweep)}
    assert client.download_artifacts(sweep, REPORT_ARTIFACT, str(reported_sweep.folder / "back")).endswith(
        REPORT_ARTIFACT)
    assert (reported_sweep.folder / "back" / REPORT_ARTIFACT).read_text() == page

    # Self-contained: every image inline, nothing fetched from anywhere.
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page and "http://" not in page and "https://" not in page

    for heading in ("Learning curves", "ASHA rung survival", "Parameter importances", "Parallel coordinates",
                    "Slice plots", "Ensemble score against k", "Confusion matrix", "Error montage",
                    "Class activation maps"):
        assert f"<h2>{heading}</h2>" in page
    # Every trial reached the first rung (epoch 1), pruned ones too: the Optuna plots are drawn over all 8.
    assert page.count("Score: val_accuracy at epoch 1 (an ASHA rung), the highest epoch all of them reached, over "
                      "the 8 trials that reached it, pruned ones included.") == 3
    assert "has changed since the sweep" not in page  # the montage's images are the sweep's own test rows
    montage = 0 if "the best trial got every test image right" in page else 1
    # learning curves, survival, 3 optuna plots, ensemble, confusion matrix, montage (unless none wrong), Grad-CAM
    assert len(sources) == 8 + montage
    assert "no ensemble run yet" not in page
    best = tracking.trial_runs(client, sweep, order_by=["metrics.best_val_accuracy DESC"])[0]
    assert f"best trial</th><td>{best.data.tags['visionsweep.trial_id']}: val_accuracy " in page


def test_report_needs_a_sweep(reported_sweep, capsys):
    from visionsweep.cli import main

    assert main(["report", "--tracking-uri", reported_sweep.uri]) == 2
    assert "give --sweep RUN_ID or --experiment NAME" in capsys.readouterr().err
    assert main(["report", "--experiment", "no-such", "--tracking-uri", reported_sweep.uri]) == 1
    assert "no MLflow experiment named 'no-such'" in capsys.readouterr().err
    trial = tracking.trial_runs(reported_sweep.client, reported_sweep.sweep_run_id)[0]
    assert main(["report", "--sweep", trial.info.run_id, "--tracking-uri", reported_sweep.uri]) == 1
    assert f"is a trial, not a sweep; its sweep: --sweep {reported_sweep.sweep_run_id}" in capsys.readouterr().err


def test_class_activation_maps_of_the_final_ensembles_best_member(reported_sweep):
    page = reported_sweep.report.read_text()
    client = reported_sweep.client
    found = re.search(r"Grad-CAM of trial (\w+) \(run (\w+)\), the final ensemble&#x27;s best member by validation "
                      r"score, at layer ([\w.]+):", page)
    assert found, page[page.find("Class activation maps"):][:600]
    run_id = found.group(2)
    ensemble = client.search_runs([reported_sweep.experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{reported_sweep.sweep_run_id}' and tags.`{record.TAG_KIND}` = 'ensemble'"))[0]
    spec = client.download_artifacts(ensemble.info.run_id, "ensemble.json", str(reported_sweep.folder / "spec"))
    members = {m["run_id"] for m in json.loads(open(spec).read())["members"]}
    scores = {r.info.run_id: r.data.metrics["best_val_accuracy"] for r in tracking.trial_runs(client, reported_sweep.sweep_run_id)
              if r.info.run_id in members}
    assert run_id == max(scores, key=scores.get)
    logged = {a.path for a in client.list_artifacts(run_id, "gradcam")}
    assert len(logged) == 10 and all(p.startswith("gradcam/") and p.endswith(".png") for p in logged)  # digits 0-9


def test_explain_a_chosen_run_from_the_command_line(reported_sweep, capsys):
    from visionsweep.cli import main

    uri, client = reported_sweep.uri, reported_sweep.client
    trial = tracking.trial_runs(client, reported_sweep.sweep_run_id)[-1].info.run_id
    output = reported_sweep.folder / "explained"
    assert main(["explain", "--run", trial, "--tracking-uri", uri, "--output", str(output)]) == 0
    assert "Grad-CAM at layer " in capsys.readouterr().out
    assert len(list(output.glob("*.png"))) == 10 and len(client.list_artifacts(trial, "gradcam")) == 10
    assert main(["explain", "--run", trial, "--layer", "no.such.layer", "--tracking-uri", uri]) == 1
    assert "layer 'no.such.layer' is not in the model; its last layers with feature maps: " in capsys.readouterr().err
    assert main(["explain", "--run", reported_sweep.sweep_run_id, "--tracking-uri", uri]) == 1
    assert "is not a visionsweep trial run" in capsys.readouterr().err
