"""Starting real servers in tests: a free port, and waiting until a server answers."""

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

# The session's local Ray (conftest's local_ray); a test that needs Ray started another way restores it so.
LOCAL_RAY = {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False, "configure_logging": False}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, log_path, stop, timeout: float = 60) -> None:
    """Polls URL/health until the server answers; if it exits or takes over `timeout` s, `stop()` it and fail with its log."""
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
