"""Where a sweep keeps what it needs to be resumed, recorded as tags on its MLflow parent run.

`visionsweep resume SWEEP` starts from the parent run alone: its config artifact, and these tags that
say where Ray Tune's experiment (trial states, checkpoints, searcher snapshot) and the Optuna study live.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import optuna
import pyarrow.fs
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from visionsweep.config import SweepConfig
from visionsweep.record import TAG_STUDY_NAME, TAG_STUDY_STORAGE, TAG_TUNE_PATH

DEFAULT_CHECKPOINTS = "~/ray_results"  # Ray Tune's own default
STUDY_JOURNAL = "optuna.journal"
TUNE_STATE_PREFIX = "experiment_state-"  # Ray Tune's experiment snapshots: experiment_state-<time>.json


@dataclass(frozen=True)
class SweepState:
    storage_root: str  # the checkpoint folder or URI that holds Tune's experiment
    name: str  # Tune's experiment name, also the Optuna study's name
    study_storage: str | None  # a journal file path or a database URL; None keeps the study in memory

    @classmethod
    def create(cls, config: SweepConfig, sweep_run_id: str, storage_path: str | None = None) -> "SweepState":
        root = storage_path or config.storage.checkpoints or DEFAULT_CHECKPOINTS
        if "://" not in root:
            root = str(Path(root).expanduser().absolute())
        name = f"{config.name}-{sweep_run_id[:8]}"
        study = config.storage.optuna
        if study is None and "://" not in root:
            # A journal file: far faster per ask than SQLite (docs/stack.md), and safe for concurrent writers.
            study = str(Path(root, name, STUDY_JOURNAL))
        # Otherwise (cloud checkpoints, no database given) the study lives in memory and comes back from
        # Tune's searcher snapshot, which may miss the last few trials' outcomes.
        return cls(root.rstrip("/"), name, study)

    @property
    def tune_path(self) -> str:
        return f"{self.storage_root}/{self.name}"

    def has_tune_experiment(self) -> bool:
        """Whether Ray Tune saved the experiment's state at `tune_path` (a folder or a URI such as s3://...)."""
        if "://" in self.tune_path:
            filesystem, path = pyarrow.fs.FileSystem.from_uri(self.tune_path)
        else:
            filesystem, path = pyarrow.fs.LocalFileSystem(), self.tune_path
        found = filesystem.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
        return any(Path(info.path).name.startswith(TUNE_STATE_PREFIX) for info in found)

    def tags(self) -> dict[str, str]:
        return {TAG_TUNE_PATH: self.tune_path, TAG_STUDY_NAME: self.name, TAG_STUDY_STORAGE: self.study_storage or ""}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> "SweepState":
        root, _, name = tags[TAG_TUNE_PATH].rpartition("/")
        return cls(root, name, tags.get(TAG_STUDY_STORAGE) or None)

    def open_study_storage(self) -> optuna.storages.BaseStorage | None:
        return open_study_storage(self.study_storage) if self.study_storage else None


def open_study_storage(spec: str) -> optuna.storages.BaseStorage:
    """A database URL (postgresql://..., sqlite:///...) or the path of a journal file."""
    if "://" in spec:
        # pool_pre_ping: a connection the database dropped (restart, idle timeout) is replaced, not failed.
        return RDBStorage(spec, engine_kwargs={"pool_pre_ping": True})
    Path(spec).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFile(spec))


class JournalFile(JournalFileBackend):
    """Optuna's journal file, each append written to the file under its lock but not fsync'ed.

    An ask writes the journal 9 times (the new trial, each parameter, constant liar's proposal) and every
    epoch's report once more; Optuna's fsync after each write cost 40-45 ms of an 85-ms ask at 300 trials
    (bench/ask_latency.py). A written line is in the file for every process at once, and the OS keeps it
    when the driver dies (Ctrl-C, SIGKILL, OOM: what `resume` is for); only the machine's own crash could
    lose the last lines, as it could Ray Tune's experiment snapshot, which is written without fsync too.
    """

    def __init__(self, path: str):
        self.path = path
        self.lock = JournalFileSymlinkLock(path)
        super().__init__(path, lock_obj=self.lock)

    def append_logs(self, logs: list[dict]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        self.lock.acquire()  # waits for another writer (and frees a stale lock)
        try:
            with open(self.path, "ab") as file:
                file.write(text)
        finally:
            self.lock.release()


def close_abandoned_trials(study: optuna.Study) -> int:
    """Marks FAIL the study trials still RUNNING when the sweep is over: proposed by a driver that died
    before Ray recorded the trial, they never ran (Ray proposed a replacement). Returns how many."""
    abandoned = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING])
    for trial in abandoned:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return len(abandoned)
