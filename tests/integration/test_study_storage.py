"""The Optuna study's storage under concurrent writers: a journal file (one machine) and PostgreSQL (a cluster)."""

import multiprocessing
import uuid

import optuna
import pytest

from visionsweep.orchestrator import open_study_storage

pytestmark = pytest.mark.integration

WRITERS = 4
TRIALS_EACH = 8


def work(storage_spec: str, study_name: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=open_study_storage(storage_spec))
    for _ in range(TRIALS_EACH):
        trial = study.ask()
        trial.report(trial.suggest_float("x", 0, 1), step=1)
        study.tell(trial, trial.params["x"])


def hammer(storage_spec: str) -> optuna.Study:
    name = f"concurrent-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_study_storage(storage_spec))
    context = multiprocessing.get_context("fork")  # optuna is imported already: no 3 s import per writer
    writers = [context.Process(target=work, args=(storage_spec, name)) for _ in range(WRITERS)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert [w.exitcode for w in writers] == [0] * WRITERS, "a writer failed (e.g. 'database is locked')"
    return optuna.load_study(study_name=name, storage=open_study_storage(storage_spec))


def check(study: optuna.Study) -> None:
    trials = study.trials
    assert len(trials) == WRITERS * TRIALS_EACH
    assert sorted(t.number for t in trials) == list(range(WRITERS * TRIALS_EACH))  # no number given twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(t.value == t.params["x"] == t.intermediate_values[1] for t in trials)


def test_journal_file_under_concurrent_writers(tmp_path):
    check(hammer(str(tmp_path / "study.journal")))


def test_postgresql_under_concurrent_writers(postgres_url):
    check(hammer(postgres_url))
