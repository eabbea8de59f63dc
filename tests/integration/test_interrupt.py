"""`visionsweep run` as a person runs it, in a terminal of its own: Ray's token auth on while it runs, Ctrl-C
(SIGINT to its process group) ends it KILLED within seconds with nothing left behind, and `visionsweep
resume` then finishes each cut-short trial in its own run, every epoch logged once.

One sweep (two digits trials) serves the three tests; every process it starts is in the session the test
gives it, so "nothing left behind" is checked by that session's PIDs, not machine-wide.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from mlflow.tracking import MlflowClient
from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

from support.stores import sqlite_store
from visionsweep import record, tracking

pytestmark = pytest.mark.integration

SRC = Path(__file__).parents[2] / "src"
MAX_EPOCHS = 30  # a few seconds of training: Ctrl-C must reach the sweep before its trials end, even on a busy machine
CONFIG = f"""
name: it-interrupt
space: {{lr: {{loguniform: [0.01, 0.1]}}, channels: {{categorical: [8]}}}}
search: {{sampler: random, trials: 2, seed: 1}}
scheduler: {{kind: fifo, max_epochs: {MAX_EPOCHS}}}
resources: {{cpu: 1, concurrent: 2}}
tracking: {{batch_seconds: 0.5}}
"""


def user_environment() -> dict[str, str]:
    """A shell's environment: nothing of the test session's Ray settings (its auth token) in it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "PYTHONPATH": str(SRC)}


def session_processes(session: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # not a process, or gone
            continue
        if fields[0] != "Z" and int(fields[3]) == session:
            pids.append(int(entry.name))
    return pids


def visionsweep(folder: Path, *args: str, name: str) -> subprocess.Popen:
    """A `visionsweep` command in a new session (as in a terminal of its own), output to NAME.out / NAME.err."""
    with open(folder / f"{name}.out", "w") as out, open(folder / f"{name}.err", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "visionsweep.cli", *args], stdout=out, stderr=err,
                                cwd=folder, env=user_environment(), start_new_session=True)


def wait_for(condition, process: subprocess.Popen, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:.0f} s (exit status {process.poll()})")
        time.sleep(0.5)
    return value


def trials_with_an_epoch(client: MlflowClient) -> int:
    experiment = client.get_experiment_by_name("it-interrupt")
    if experiment is None:
        return 0
    runs = client.search_runs([experiment.experiment_id], "tags.`visionsweep.kind` = 'trial'")
    return sum("val_accuracy" in run.data.metrics for run in runs)


def gcs_of(session: int) -> tuple[str, str]:
    """The address of the session's Ray GCS (ip:port), and the auth token its Ray processes were given."""
    for pid in session_processes(session):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
        except OSError:
            continue
        if command and command[0].endswith("gcs_server"):
            flags = dict(arg.removeprefix("--").split("=", 1) for arg in command if "=" in arg)
            (port_file,) = Path(flags["session-dir"]).glob("gcs_server_port_*")
            token = dict(v.split("=", 1) for v in environ if "=" in v).get("RAY_AUTH_TOKEN", "")
            return f"{flags['node-ip-address']}:{port_file.read_text().strip()}", token
    raise AssertionError(f"no gcs_server among the processes of session {session}")


def gcs_answer(address: str, metadata: tuple = ()) -> str:
    """The status of one GCS call from a client that is no Ray process: OK, or the gRPC status name."""
    with grpc.insecure_channel(address) as channel:
        try:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=30, metadata=metadata)
            return "OK"
        except grpc.RpcError as err:
            return err.code().name


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interrupt")
    (folder / "sweep.yaml").write_text(CONFIG)
    uri = sqlite_store(folder)
    run = visionsweep(folder, "run", "sweep.yaml", "--tracking-uri", uri, "--storage-path", str(folder / "ray"),
                      name="run")
    try:
        client = MlflowClient(uri)
        wait_for(lambda: trials_with_an_epoch(client) == 2, run, 300, "both trials logging epochs")
        address, token = gcs_of(run.pid)
        answers = {"no token": gcs_answer(address), "wrong token": gcs_answer(address, (("authorization", "Bearer " + "0" * 64),)),
                   "its token": gcs_answer(address, (("authorization", f"Bearer {token}"),))}
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        interrupted_at = time.monotonic()
        code = run.wait(120)
        stop_seconds = time.monotonic() - interrupted_at
        deadline = time.monotonic() + 15
        while (left := session_processes(run.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for pid in session_processes(run.pid):  # whatever a failure left: ours alone
            os.kill(pid, signal.SIGKILL)
    yield SimpleNamespace(folder=folder, uri=uri, client=client, code=code, stop_seconds=stop_seconds, left=left,
                          answers=answers, sweep_run_id=tracking.latest_sweep(client, "it-interrupt"),
                          out=(folder / "run.out").read_text(), err=(folder / "run.err").read_text())


def test_a_local_run_keeps_ray_auth_on(interrupted):
    """Ray listens beyond loopback (no setting binds it to 127.0.0.1 only): without the run's token, nothing answers."""
    assert interrupted.answers == {"no token": "UNAUTHENTICATED", "wrong token": "UNAUTHENTICATED", "its token": "OK"}


def test_ctrl_c_ends_the_sweep_killed_within_seconds_and_leaves_no_process(interrupted):
    assert interrupted.code == 130, interrupted.err[-3000:]
    assert interrupted.stop_seconds < 60
    assert interrupted.left == [], "processes of the run's Ray outlived it"
    assert "Traceback" not in interrupted.err and f"visionsweep resume {interrupted.sweep_run_id}" in interrupted.err
    client = interrupted.client
    assert client.get_run(interrupted.sweep_run_id).info.status == "KILLED"
    trials = tracking.trial_runs(client, interrupted.sweep_run_id)
    assert len(trials) == 2
    for run in trials:
        assert run.info.status == "KILLED" and run.data.tags[record.TAG_OUTCOME] == "killed"
        assert "visionsweep.pruned_at_epoch" not in run.data.tags and "best_val_accuracy" not in run.data.metrics


def test_resume_after_ctrl_c_finishes_each_trial_in_its_run_every_epoch_once(interrupted):
    client = interrupted.client
    before = {run.info.run_id for run in tracking.trial_runs(client, interrupted.sweep_run_id)}
    resume = visionsweep(interrupted.folder, "resume", interrupted.sweep_run_id, "--tracking-uri", interrupted.uri,
                         name="resume")
    try:
        code = resume.wait(300)
    finally:
        for pid in session_processes(resume.pid):
            os.kill(pid, signal.SIGKILL)
    assert code == 0, (interrupted.folder / "resume.err").read_text()[-3000:]
    assert client.get_run(interrupted.sweep_run_id).info.status == "FINISHED"
    trials = tracking.trial_runs(client, interrupted.sweep_run_id)
    assert {run.info.run_id for run in trials} == before, "each trial continues in its own run"
    for run in trials:
        assert run.info.status == "FINISHED" and run.data.tags[record.TAG_OUTCOME] == "complete"
        assert "visionsweep.pruned_at_epoch" not in run.data.tags
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == list(range(1, MAX_EPOCHS + 1)), "every epoch logged once"
        best_epoch = int(run.data.metrics["best_epoch"])
        assert run.data.metrics["best_val_accuracy"] == max(m.value for m in history)
        assert run.data.metrics["best_val_accuracy"] == {m.step: m.value for m in history}[best_epoch]
