"""The report of a real sweep: built from MLflow alone, self-contained, logged to the sweep run."""

import re

import optuna
import pytest

from visionsweep import tracking
from visionsweep.report import REPORT_ARTIFACT

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
    outcomes = sorted(r.data.tags[tracking.TAG_OUTCOME] for r in runs)
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
                    "Slice plots", "Ensemble score against k", "Confusion matrix", "Error montage"):
        assert f"<h2>{heading}</h2>" in page
    study = tracking.load_study(client, sweep)
    complete = len(study.get_trials(states=[optuna.trial.TrialState.COMPLETE]))
    optuna_drawn = page.count("Over the ")
    not_drawn = page.count("not drawn: needs at least two trials that ran every epoch")
    assert (optuna_drawn, not_drawn) == ((3, 0) if complete >= 2 else (0, 3))
    assert "has changed since the sweep" not in page  # the montage's images are the sweep's own test rows
    montage = 0 if "the best trial got every test image right" in page else 1
    # learning curves, survival, 3 optuna plots (when drawn), ensemble, confusion matrix, montage (unless none wrong)
    assert len(sources) == 4 + optuna_drawn + montage
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
    assert "is not a visionsweep sweep run" in capsys.readouterr().err
