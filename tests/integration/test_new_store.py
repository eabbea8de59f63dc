"""Several first sweeps on one new MLflow database at the same moment: each opens it, none dies creating its tables."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SRC = Path(__file__).parents[2] / "src"
STARTERS = 3
# What a sweep does first: open the store, make (or find) its experiment. Each says it is ready, then waits for
# the same go signal, so that all of them meet the empty database at once.
OPEN = """
import os, sys, time
from pathlib import Path
from visionsweep import tracking
go = Path(sys.argv[2])
Path(f"{go}.ready-{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.01)
client, experiment_id = tracking.connect(sys.argv[1], "first-sweeps")
print("experiment", experiment_id)
"""


def open_at_once(uri: str, folder: Path) -> list[subprocess.CompletedProcess]:
    go = folder / "go"
    starters = [subprocess.Popen([sys.executable, "-c", OPEN, uri, str(go)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
                for _ in range(STARTERS)]
    deadline = time.monotonic() + 300
    while len(list(folder.glob("go.ready-*"))) < STARTERS and time.monotonic() < deadline:
        time.sleep(0.1)
    go.touch()
    return [(starter.wait(300), *starter.communicate()) for starter in starters]


def check(results):
    for code, out, err in results:
        assert code == 0, err[-3000:]
    assert len({out.split()[-1] for _, out, _ in results}) == 1, "one experiment, found or made by each"


def test_first_sweeps_at_once_on_a_new_sqlite_store(tmp_path):
    check(open_at_once(f"sqlite:///{tmp_path}/mlflow.db", tmp_path))


def test_first_sweeps_at_once_on_a_new_postgresql_store(postgres_url, tmp_path):
    check(open_at_once(postgres_url, tmp_path))
