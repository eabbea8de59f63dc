"""A real two-node Ray cluster on this machine, an MLflow server on PostgreSQL, and drivers as real processes.

Recipe (docs/stack.md): nodes on their own loopback addresses (127.0.0.1 would be replaced by
the machine's address), a temp dir per node, every port chosen free, fast dead-node detection. Each
node is `ray start --block`, so every process of a node is a descendant of one pid we own: stopping or
killing a node touches only those processes (never `ray stop`, which ends every Ray on the machine).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from support.servers import free_port, wait_for


SRC = Path(__file__).parents[2] / "src"
RAY = Path(sys.executable).parent / "ray"
# A killed node is declared dead after about 1 s instead of 13-15 s (docs/stack.md).
FAST_HEALTH_CHECK = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "2",
}
# Place each new trial on the least-busy node (default: fill the driver's node to 50% first), so that
# two trials land one per node and the tests can tell the nodes apart.
SPREAD = {"RAY_scheduler_spread_threshold": "0.0"}
STOP_ORDER = ("raylet", "log_monitor", "monitor.py", "ray_client_server", "gcs_server")  # quickest clean stop


def worker_ports_ceiling() -> int:
    """Where the kernel's ephemeral ports start: free_port() draws from there up, so a worker-port range
    below it can never collide with another component's port."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return max(low, 20400)


def environment(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(
        RAY_AUTH_MODE="token",  # every node and driver: the test session's token (tests/conftest.py)
        RAY_AUTH_TOKEN=os.environ["RAY_AUTH_TOKEN"],
        PYTHONPATH=str(SRC),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",  # `python` in a job's entrypoint: this venv
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        **extra,
    )
    return env


class RayNode:
    """One `ray start --block` process and everything it started."""

    def __init__(self, ip: str, args: list[str], env: dict[str, str]):
        self.ip = ip
        self.temp_dir = tempfile.mkdtemp(prefix="vsray-", dir="/tmp")  # short: Ray's socket paths have a length limit
        ports = {
            flag: free_port()
            for flag in ("--object-manager-port", "--node-manager-port", "--dashboard-agent-listen-port",
                         "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
        }
        low = random.randrange(20000, worker_ports_ceiling() - 200, 200)  # not Ray's default 10002-19999
        command = [str(RAY), "start", "--block", f"--node-ip-address={ip}", f"--temp-dir={self.temp_dir}",
                   f"--min-worker-port={low}", f"--max-worker-port={low + 199}",
                   *(f"{flag}={port}" for flag, port in ports.items()), *args]
        self.log = open(Path(self.temp_dir, "ray-start.log"), "w")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def log_tail(self, chars: int = 3000) -> str:
        self.log.flush()
        return Path(self.temp_dir, "ray-start.log").read_text()[-chars:]

    def processes(self) -> list[int]:
        return descendants(self.process.pid)

    def kill(self) -> None:
        """kill -9 of the whole node, as when a spot instance vanishes."""
        doomed = [self.process.pid, *self.processes()]
        for pid in doomed:
            signal_pid(pid, signal.SIGKILL)
        self.process.wait(10)
        wait_gone(doomed, 10)

    def stop(self) -> None:
        if self.process.poll() is None:
            children = self.processes()
            signal_pid(self.process.pid, signal.SIGKILL)  # or --block stops the rest in its own, slower way
            self.process.wait(10)
            by_name = {pid: command_line(pid) for pid in children}
            for name in STOP_ORDER:
                for pid, command in by_name.items():
                    if name in command:
                        signal_pid(pid, signal.SIGTERM)
            terminate(children)
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (children before grandchildren)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def signal_pid(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def terminate(pids: list[int], grace: float = 5) -> None:
    """SIGTERM, then SIGKILL what is still there after `grace` seconds."""
    for pid in pids:
        signal_pid(pid, signal.SIGTERM)
    for pid in wait_gone(pids, grace):
        signal_pid(pid, signal.SIGKILL)
    wait_gone(pids, grace)


class Cluster:
    """A head (2 CPUs, no GPU, job server) and a worker node (2 CPUs, 1 logical GPU) on their own loopback addresses."""

    def __init__(self):
        subnet = random.randrange(10, 250)  # apart from other sessions' clusters on this machine
        self.head_ip, self.worker_ip = f"127.0.{subnet}.2", f"127.0.{subnet}.3"
        self.port, self.dashboard_port = free_port(), free_port()
        self.head = RayNode(
            self.head_ip,
            ["--head", f"--port={self.port}", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=true",
             f"--dashboard-host={self.head_ip}", f"--dashboard-port={self.dashboard_port}",
             f"--ray-client-server-port={free_port()}"],
            environment(**FAST_HEALTH_CHECK, **SPREAD),
        )
        self.workers = []
        try:
            wait_for(lambda: self.alive_nodes() == {self.head_ip}, 90, "the Ray head")
            self.add_worker()
        except AssertionError as err:
            logs = "\n".join(f"--- {node.ip}: {node.log_tail()}" for node in [self.head, *self.workers])
            self.stop()
            raise AssertionError(f"{err}\n{logs}") from None

    @property
    def address(self) -> str:
        return f"{self.head_ip}:{self.port}"

    @property
    def job_server(self) -> str:
        return f"http://{self.head_ip}:{self.dashboard_port}"

    def add_worker(self) -> RayNode:
        worker = RayNode(self.worker_ip, [f"--address={self.address}", "--num-cpus=2", "--num-gpus=1"], environment())
        self.workers.append(worker)
        wait_for(lambda: self.worker_ip in self.alive_nodes(), 90, "the worker node to join")
        return worker

    def alive_nodes(self) -> set[str]:
        try:
            # Ray's token auth covers the dashboard's HTTP API too: the same token, as a bearer header.
            request = urllib.request.Request(f"{self.job_server}/nodes?view=summary",
                                             headers={"Authorization": f"Bearer {os.environ['RAY_AUTH_TOKEN']}"})
            with urllib.request.urlopen(request, timeout=2) as response:
                summary = json.load(response)["data"]["summary"]
        except (OSError, ValueError, KeyError):
            return set()
        return {node["raylet"]["nodeManagerAddress"] for node in summary if node["raylet"]["state"] == "ALIVE"}

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.head.stop()


class Driver:
    """`visionsweep ARGS...` as its own process, its output kept in a file."""

    def __init__(self, folder: Path, *args: str):
        self.output = folder / f"visionsweep-{args[0]}-{time.monotonic_ns()}.log"
        with open(self.output, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "visionsweep.cli", *args], env=environment(), cwd=folder,
                stdout=log, stderr=subprocess.STDOUT,
            )

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"visionsweep did not end in {timeout} s:\n{self.text[-3000:]}") from None

    @property
    def text(self) -> str:
        return self.output.read_text()


def write_sweep(folder: Path, **sections) -> Path:
    """A tiny digits sweep: random sampler, FIFO (every trial runs all its epochs), plus the given sections."""
    sweep = {
        "data": {"dataset": "digits"},
        "space": {"lr": {"loguniform": [0.02, 0.2]}, "channels": {"categorical": [8, 16]}},
        "search": {"sampler": "random", "seed": 3},
        "scheduler": {"kind": "fifo"},
        "model_params": {"n_conv": 1},
        # The tests time their faults by what MLflow shows mid-sweep: epochs of 0.3 s must show at once.
        "tracking": {"batch_seconds": 0.2},
    }
    for key, value in sections.items():
        sweep[key] = {**sweep.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / f"{sweep['name']}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path
