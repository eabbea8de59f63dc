"""Where a sweep keeps its resumable state, and how the parent run's tags bring it back."""

from pathlib import Path

import optuna

from visionsweep.config import parse_config
from visionsweep.orchestrator import SweepState, open_study_storage
from visionsweep.orchestrator._state import close_abandoned_trials


def config(**storage):
    return parse_config({"name": "s", "space": {"lr": {"loguniform": [0.01, 0.1]}}, "storage": storage})


def test_local_checkpoints_keep_the_study_in_a_journal_beside_them(tmp_path):
    state = SweepState.create(config(checkpoints=str(tmp_path)), "abcdef1234567")
    assert state.tune_path == f"{tmp_path}/s-abcdef12"
    assert state.study_storage == f"{tmp_path}/s-abcdef12/optuna.journal"
    assert SweepState.from_tags(state.tags()) == state


def test_cloud_checkpoints_take_the_configured_database():
    state = SweepState.create(config(checkpoints="s3://bucket/sweeps", optuna="postgresql://u@h/db"), "0123456789")
    assert state.tune_path == "s3://bucket/sweeps/s-01234567"
    assert state.study_storage == "postgresql://u@h/db"
    assert SweepState.from_tags(state.tags()) == state


def test_cloud_checkpoints_without_a_database_keep_the_study_in_memory():
    state = SweepState.create(config(checkpoints="s3://bucket"), "0123456789")
    assert state.study_storage is None and state.open_study_storage() is None
    assert SweepState.from_tags(state.tags()) == state


def test_the_command_line_path_wins_over_the_config(tmp_path):
    state = SweepState.create(config(checkpoints="/elsewhere"), "0123456789", storage_path=str(tmp_path / "x"))
    assert state.storage_root == str(tmp_path / "x")


def test_abandoned_trials_are_failed_and_the_rest_kept(tmp_path):
    storage = open_study_storage(str(tmp_path / "j" / "study.journal"))
    study = optuna.create_study(storage=storage, study_name="s")
    study.tell(study.ask(), 1.0)
    study.ask()  # proposed, never run: its driver died
    assert close_abandoned_trials(optuna.load_study(study_name="s", storage=storage)) == 1
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert Path(tmp_path / "j" / "study.journal").exists()


def test_the_journal_file_is_shared_and_reopened_without_losing_a_write(tmp_path):
    path = str(tmp_path / "study" / "optuna.journal")
    first = optuna.create_study(study_name="j", storage=open_study_storage(path), direction="maximize")
    second = optuna.load_study(study_name="j", storage=open_study_storage(path))  # another process's view
    trial = first.ask()
    trial.suggest_float("lr", 0.01, 0.1)
    first.tell(trial, 0.5)
    running = second.ask()  # sees the first trial, and adds its own
    assert [t.state for t in second.trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING]
    assert len(first.trials) == 2 and first.trials[1].number == running.number
    reopened = optuna.load_study(study_name="j", storage=open_study_storage(path))
    assert reopened.best_value == 0.5 and reopened.trials[0].params == trial.params
    assert all(line.endswith("}") for line in Path(path).read_text().splitlines())  # one whole log per line
