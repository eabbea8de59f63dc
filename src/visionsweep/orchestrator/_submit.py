"""`visionsweep submit FILE --address http://HEAD:8265`: the sweep's driver runs on the cluster as a Ray job.

The laptop only uploads and leaves: the resolved config (overrides applied) goes up in the job's working
directory, and this checkout's `visionsweep` package goes up with it, with the code of your own models
(`model: pkg.module:function`), so the cluster runs the code you submitted, on the dependencies its nodes
installed (cluster.yaml). A sweep's own training function travels the same way: its top-level package as one
of the job's `py_modules` (a single-file module in the working directory), importable by the driver and by
every trial process on every node.
"""

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from ray.job_submission import JobStatus, JobSubmissionClient

import visionsweep
from visionsweep.config import SweepConfig
from visionsweep.orchestrator._sweep import user_code
from visionsweep.trainables import load_trainable

UPLOADED_CONFIG = "sweep.yaml"
FOLLOW_POLL = 2.0  # seconds between status checks while waiting for a job to end


def submit_sweep(
    config: SweepConfig, address: str, tracking_uri: str | None = None, storage_path: str | None = None,
    follow: bool = False,
) -> tuple[str, JobStatus | None]:
    """Submits the sweep as a Ray job; returns its id and, when following, its final status."""
    client = JobSubmissionClient(address)
    entrypoint = ["python", "-m", "visionsweep.cli", "run", UPLOADED_CONFIG]
    if tracking_uri:  # else the cluster's MLFLOW_TRACKING_URI (cluster.yaml sets it on every node)
        entrypoint += ["--tracking-uri", tracking_uri]
    if storage_path:
        entrypoint += ["--storage-path", storage_path]
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, UPLOADED_CONFIG).write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
        job_id = client.submit_job(
            entrypoint=" ".join(entrypoint),
            runtime_env=job_runtime_env(config, folder),
            metadata={"visionsweep.sweep": config.name},
        )
    print(f"submitted job {job_id} to {address}", flush=True)
    if not follow:
        print(f"follow it: ray job logs --address {address} --follow {job_id}")
        return job_id, None
    return job_id, follow_job(client, job_id)


def job_runtime_env(config: SweepConfig, folder: str) -> dict:
    """The job's working directory (the uploaded config) and the code its driver and workers import:
    visionsweep itself, the code of the sweep's models given by import path, and the package of its own
    training function (a single-file module is copied into the working directory instead)."""
    py_modules = [str(Path(visionsweep.__file__).parent), *sorted({str(c.unit) for c in user_code(config)})]
    if config.trainable:
        _, code_folder = load_trainable(config.trainable, config.folder)
        top = Path(code_folder, config.trainable.partition(".")[0].partition(":")[0])
        if not top.is_dir():
            shutil.copy2(top.with_suffix(".py"), folder)
        elif str(top) not in py_modules:
            py_modules.append(str(top))
    return {"working_dir": folder, "py_modules": py_modules}


def follow_job(client: JobSubmissionClient, job_id: str) -> JobStatus:
    """Prints the job's log as it grows; returns the job's final status."""

    async def tail():
        async for lines in client.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    asyncio.run(tail())
    while not (status := client.get_job_status(job_id)).is_terminal():
        time.sleep(FOLLOW_POLL)
    return status
