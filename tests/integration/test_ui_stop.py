"""`visionsweep ui` stopped by a signal to its PID alone (as a service manager stops it) stops its MLflow server."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support.servers import free_port, wait_until_serving

pytestmark = pytest.mark.integration

SRC = Path(__file__).parents[2] / "src"


def descendants(pid: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError):  # not a process, or gone
            continue
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_ui_process_stops_its_server(tmp_path, signum):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "ui.log", "w")
    ui = subprocess.Popen(
        [sys.executable, "-m", "visionsweep.cli", "ui", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(SRC)}, start_new_session=True,
    )
    server = []
    try:
        wait_until_serving(url, ui, tmp_path / "ui.log", stop=ui.kill, timeout=180)  # a busy machine: slow imports
        server = descendants(ui.pid)
        assert server, "the MLflow server runs below the ui process"
        os.kill(ui.pid, signum)  # its PID alone, not its process group
        assert ui.wait(30) == 0
        deadline = time.monotonic() + 15
        while [pid for pid in server if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in server if alive(pid)], "the server outlived `visionsweep ui`"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/health", timeout=2)
    finally:
        for pid in [*(server or descendants(ui.pid)), ui.pid]:  # whatever a failure left, ours alone
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
