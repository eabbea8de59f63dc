"""`visionsweep ensemble --refit`: a sweep's best configurations trained again on real Ray, logged to real MLflow."""

import contextlib
import io

import pytest
import yaml
from mlflow.tracking import MlflowClient

from support.stores import sqlite_store
from visionsweep import record, tracking
from visionsweep.cli import main
from visionsweep.outcome import Outcome

pytestmark = pytest.mark.integration

EPOCHS = 2


def test_refit_trains_the_best_configurations_to_the_full_budget_and_ensembles_them(local_ray, tmp_path):
    uri = sqlite_store(tmp_path)
    config = tmp_path / "sweep.yaml"
    # ASHA stops trials after epoch 1; the refit trains its two configurations for both epochs, one seed each.
    config.write_text(yaml.safe_dump({
        "name": "it-refit",
        "space": {"lr": {"loguniform": [0.01, 0.3]}, "channels": {"categorical": [8, 16]}},
        "search": {"sampler": "random", "trials": 4, "seed": 5},
        "scheduler": {"max_epochs": EPOCHS, "grace_period": 1, "reduction_factor": 2},
        "final": {"refit": 2},
    }))
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(["run", str(config), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")]) == 0
        # --refit 2 --seeds 1 as the sweep file's final: section says; --seeds given to check the flag
        assert main(["ensemble", "--experiment", "it-refit", "--seeds", "1", "--top-k", "1", "100%",
                     "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")]) == 0
    client = MlflowClient(uri)
    sweep_id = tracking.latest_sweep(client, "it-refit")
    experiment = client.get_run(sweep_id).info.experiment_id
    sweep_trials = tracking.trial_runs(client, sweep_id)
    assert any(t.data.tags[record.TAG_OUTCOME] == Outcome.PRUNED.value for t in sweep_trials)
    best = max(sweep_trials, key=lambda t: t.data.metrics.get("best_val_accuracy", -1))

    refits = client.search_runs([experiment], f"tags.`{record.TAG_KIND}` = '{record.KIND_REFIT}'")
    assert len(refits) == 1
    refit = refits[0]
    assert refit.info.status == "FINISHED" and refit.data.tags[record.TAG_PARENT] == sweep_id
    assert refit.data.params["scheduler.kind"] == "fifo" and refit.data.params["scheduler.max_epochs"] == str(EPOCHS)
    trials = tracking.trial_runs(client, refit.info.run_id)
    assert len(trials) == 2  # 2 configurations x 1 seed
    sources = {t.data.tags[record.TAG_REFIT_OF] for t in trials}
    assert len(sources) == 2 and best.info.run_id in sources and sources <= {t.info.run_id for t in sweep_trials}
    by_id = {t.info.run_id: t for t in sweep_trials}
    for trial in trials:
        assert trial.info.status == "FINISHED" and trial.data.tags[record.TAG_OUTCOME] == Outcome.COMPLETE.value
        assert len(client.get_metric_history(trial.info.run_id, "val_accuracy")) == EPOCHS
        source = by_id[trial.data.tags[record.TAG_REFIT_OF]]
        assert trial.data.params["lr"] == source.data.params["lr"]  # the configuration, trained again
        assert trial.data.params["seed"] != source.data.params.get("seed", "0")  # ... with a new seed
        assert trial.data.tags[record.TAG_PREDICTIONS] == "stored"

    ensembles = client.search_runs([experiment], f"tags.`{record.TAG_KIND}` = '{record.KIND_ENSEMBLE}'")
    assert len(ensembles) == 1
    ensemble = ensembles[0]
    assert ensemble.data.tags[record.TAG_PARENT] == sweep_id and ensemble.data.tags[record.TAG_REFIT] == refit.info.run_id
    spec = client.download_artifacts(ensemble.info.run_id, record.ENSEMBLE_ARTIFACT, str(tmp_path))
    members = {m["run_id"] for m in yaml.safe_load(open(spec))["members"]}
    assert members and members <= {t.info.run_id for t in trials}
    assert f"ensemble of refit {refit.info.run_id} of sweep {sweep_id}" in output.getvalue()
