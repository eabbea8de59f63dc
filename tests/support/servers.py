"""Real servers in tests: a free port, waiting until a server answers, and `mlflow server` on 127.0.0.1."""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from visionsweep.cli import server_command, server_environment

# The integration session's local Ray (conftest's local_ray); a test that needs Ray started another way restores it so.
LOCAL_RAY = {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False, "configure_logging": False}


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (never a fixed one on a shared machine)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str, every: float = 0.25):
    """Polls `condition()` until it returns something true, and returns that; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def wait_until_serving(url: str, server: subprocess.Popen, log_path, stop, timeout: float = 60) -> None:
    """Polls URL/health until the server answers; if it exits or takes too long, `stop()` it and fail with its log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                stop()
                pytest.fail(f"{url} did not start serving: {Path(log_path).read_text()[-2000:]}")
            time.sleep(0.5)


class MlflowServer:
    """`mlflow server` on 127.0.0.1 (the CLI's low-memory settings) over `backend`, artifacts proxied into
    `folder`; stop() and start() again serve on the same port. Its processes are one session of their own."""

    def __init__(self, backend: str, folder: Path):
        self.backend, self.folder, self.port = backend, Path(folder), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.folder / "mlflow-server.log"
        self.process = None

    def start(self, timeout: float = 120) -> None:
        command = server_command(self.backend, "127.0.0.1", self.port, str(self.folder / "artifacts"))
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(command, env=server_environment(), stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.folder, start_new_session=True)
        wait_until_serving(self.url, self.process, self.log, stop=self.kill, timeout=timeout)

    def stop(self, grace: float = 10) -> None:
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self.process.wait(10)

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)  # the server and its workers
        except ProcessLookupError:
            pass
