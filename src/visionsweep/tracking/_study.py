"""The sweep's Optuna study, stored beside its parent run as an Optuna journal (JSON lines, no pickle).

Why a journal artifact rather than rebuilding a study from the trial runs: the journal is Optuna's own
format, so the distributions, states (PRUNED, FAIL) and intermediate values come back exactly, with no
parsing of MLflow's string params; the live study stays in memory (fast asks, docs/stack.md) and is copied
once, when the sweep ends.
"""

import contextlib
import tempfile
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from visionsweep.record import STUDY_ARTIFACT


@contextlib.contextmanager
def _quiet():
    """No "A new study created" lines: these copies are bookkeeping, not studies the user started."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _journal(path: Path) -> JournalStorage:
    with warnings.catch_warnings():  # the file backend's lock is fine here: one writer, one reader
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return JournalStorage(JournalFileBackend(str(path)))


def log_study(client, run_id: str, study: optuna.Study) -> None:
    """Copies the study's finished trials into a journal and logs it to `run_id`."""
    with tempfile.TemporaryDirectory() as folder, _quiet():
        path = Path(folder, STUDY_ARTIFACT)
        copy = optuna.create_study(storage=_journal(path), study_name=study.study_name, directions=study.directions)
        copy.add_trials([t for t in study.trials if t.state.is_finished()])  # a killed sweep leaves RUNNING ones
        client.log_artifact(run_id, str(path))


def load_study(client, run_id: str) -> optuna.Study | None:
    """The study logged with the sweep run `run_id`, or None for a sweep that has none."""
    if STUDY_ARTIFACT not in {a.path for a in client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as folder, _quiet():
        path = client.download_artifacts(run_id, STUDY_ARTIFACT, folder)
        stored = optuna.load_study(study_name=None, storage=_journal(Path(path)))
        study = optuna.create_study(study_name=stored.study_name, directions=stored.directions)
        study.add_trials(stored.trials)  # into memory: the journal file goes with the folder
    return study
