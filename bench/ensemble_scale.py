"""Time of the full ensemble job at the scale of a real 380-model study.

What: `visionsweep.ensemble.run_ensemble` end to end - list the sweep's trials, download every member's
predictions.npz (validation and test probabilities) from the MLflow server, the top 10/20/30/40/50/100%
table by soft and hard voting, greedy selection (50 rounds), bagged selection (10 bags), fitted weights (each
also fitted on one half of the validation rows and scored on the other), member agreement, the plot,
and logging the ensemble run with its artifacts.
On: 380 synthetic trial runs x 10,000 validation rows and 10,000 test rows x 10 classes (float32, about
0.8 MB of predictions per run, 300 MB in all), logged through MlflowClient to a local `mlflow server`
(sqlite backend, proxied artifacts, 127.0.0.1, one worker). No training: members are correlated
softmax outputs (a shared per-row difficulty plus member noise), single accuracy about 0.74-0.93.
Runs: --repeats times (default 3) on the same server; each repeat is reported, and the median
(--quick: 20 members x 1,000 rows, one repeat). Writes results/ensemble_scale.json and
`ensemble_table_seconds` in results/summary.json through bench/_record.py.
Target: <= 10 s per ensemble job on the project's machine (2 cores, shared).

    python bench/ensemble_scale.py [--members 380] [--rows 10000] [--classes 10] [--repeats 3] [--quick]
"""

import io
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _record import parse_args, save
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from visionsweep.cli import server_command, server_environment
from visionsweep.ensemble import run_ensemble
from visionsweep.record import TAG_KIND, TAG_PARENT
from visionsweep.tracking import log_bytes


def synthetic_probs(members: int, labels: np.ndarray, classes: int, rng) -> np.ndarray:
    """Correlated members: a shared per-row signal (some rows are hard for everyone) plus member noise."""
    rows = len(labels)
    shared = rng.normal(size=(rows, classes)).astype(np.float32)
    skill = rng.uniform(3.5, 5.0, size=members).astype(np.float32)
    out = np.empty((members, rows, classes), dtype=np.float32)
    for member in range(members):
        logits = 1.3 * shared + 0.9 * rng.normal(size=(rows, classes)).astype(np.float32)
        logits[np.arange(rows), labels] += skill[member]
        logits -= logits.max(axis=1, keepdims=True)
        out[member] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return out


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def populate(client: MlflowClient, members: int, rows: int, classes: int) -> str:
    """A sweep run with its split and `members` trial runs with predictions, as a real sweep logs them."""
    rng = np.random.default_rng(0)
    experiment = client.create_experiment("ensemble-scale")
    y_val, y_test = rng.integers(0, classes, rows), rng.integers(0, classes, rows)
    sweep = client.create_run(experiment, run_name="sweep", tags={
        TAG_KIND: "sweep", "visionsweep.metric": "val_accuracy", "visionsweep.mode": "max"}).info.run_id
    log_bytes(client, sweep, "split.npz", npz_bytes(
        train=np.arange(0), val=np.arange(rows), test=np.arange(rows, 2 * rows), val_labels=y_val,
        test_labels=y_test, classes=np.array([str(c) for c in range(classes)])))
    val, test = synthetic_probs(members, y_val, classes, rng), synthetic_probs(members, y_test, classes, rng)

    def trial(index: int) -> None:
        run = client.create_run(experiment, run_name=f"trial-{index}", tags={TAG_PARENT: sweep, TAG_KIND: "trial"})
        now = int(time.time() * 1000)
        accuracy = {"best_val_accuracy": float(np.mean(val[index].argmax(1) == y_val)),
                    "test_accuracy": float(np.mean(test[index].argmax(1) == y_test))}
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in accuracy.items()])
        log_bytes(client, run.info.run_id, "predictions.npz", npz_bytes(
            val_probs=val[index], test_probs=test[index], classes=np.array([str(c) for c in range(classes)])))
        client.set_terminated(run.info.run_id)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(trial, range(members)))
    client.set_terminated(sweep)
    return sweep


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = server_command(f"sqlite:///{folder}/server.db", "127.0.0.1", port, str(folder / "artifacts"))
    server = subprocess.Popen(command, env=server_environment(), stdout=open(folder / "server.log", "w"),
                              stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # 5-11 s alone; the suite starts every quick benchmark at once
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")


def options(parser) -> None:
    parser.add_argument("--members", type=int, help="default 380 (quick 20)")
    parser.add_argument("--rows", type=int, help="validation rows, and as many test rows (default 10,000; quick 1,000)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, help="default 3 (quick 1)")


def main() -> None:
    args = parse_args(__doc__, options)
    args.members = args.members or (20 if args.quick else 380)
    args.rows = args.rows or (1_000 if args.quick else 10_000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as folder:
        server, url = start_server(Path(folder))
        try:
            client = MlflowClient(url)
            started = time.perf_counter()
            sweep = populate(client, args.members, args.rows, args.classes)
            populate_seconds = time.perf_counter() - started
            print(f"populated {args.members} trial runs in {populate_seconds:.1f} s", flush=True)
            repeats = []
            for repeat in range(args.repeats):
                started = time.perf_counter()
                table = run_ensemble(client, sweep)
                total = time.perf_counter() - started
                metrics = client.get_run(table.run_id).data.metrics
                repeats.append({"total_seconds": total, "load_seconds": metrics["load_seconds"],
                                "compute_seconds": metrics["compute_seconds"]})
                print(f"repeat {repeat + 1}: {total:.2f} s (download {metrics['load_seconds']:.2f} s, "
                      f"table {metrics['compute_seconds']:.2f} s)", flush=True)
            print(table.format())
        finally:
            server.terminate()
            server.wait(10)
    median = statistics.median(r["total_seconds"] for r in repeats)
    save(
        args,
        "ensemble_scale",
        {
            "measures": "run_ensemble end to end against a local mlflow server",
            "headline": f"{median:.2f} s for {args.members} members x {args.rows:,} rows x {args.classes} classes",
            "target": "<= 10 s",
            "met": median <= 10,
            "runs": f"{args.repeats} repeats on one server, median",
            "members": args.members, "rows": args.rows, "classes": args.classes, "repeats": repeats,
            "median_total_seconds": median, "populate_seconds": populate_seconds,
        },
        summary={"ensemble_table_seconds": round(median, 3)},
    )

if __name__ == "__main__":
    main()
