"""Decode throughput and the time a sweep spends before its first trial starts.

What: a generated multi-label photo set like a user's own photo set - N JPEGs of SIZE x SIZE (default 20,000 of
128x128), 14 labels in the label-files layout (images/ + labels/<label>.txt), about half the images with no
label, the rarest label on 95 images, 10% saved grayscale, 5 truncated files (on_bad_image: skip).
Measured:
  1. decode, first run: `data.load_files` into an empty cache folder, `--workers` processes (default 2),
     repeated `--runs` times (default 3), each into a fresh cache; images per second = files / seconds.
     The JPEGs were just written, so they sit in the OS page cache: this is decode cost, not disk reads.
  2. decode, cached run: the same call again, reading the on-disk cache; `--runs` times.
  3. with `--sweep`: `run_sweep` of one 1-epoch trial on the cached data: seconds from the call to the
     first trial's start (its MLflow run's start time, created by the driver in on_trial_start), and the
     steps before it timed one by one afterwards (cached load, split, data fingerprint, MLflow sweep run
     with the split artifact, ray.init, putting the arrays into the object store); one run each.
Run on the project machine (2 cores, 24 GB, no GPU):
    PYTHONPATH=src python bench/decode.py --sweep
"""

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = 14
RAREST = 95  # images carrying the rarest label
TRUNCATED = 5  # broken files among the images


def generate(root: Path, count: int, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    # Label frequencies from about 30% of images down to RAREST images; about half the images get none.
    frequencies = np.geomspace(0.3, RAREST / count, LABELS)
    labels = rng.random((count, LABELS)) < frequencies
    labels[rng.random(count) < 0.3] = False
    for column in range(LABELS):
        (root / "labels" / f"label{column:02d}.txt").write_text("".join(f"{i}\n" for i in np.flatnonzero(labels[:, column])))
    chunks = np.array_split(np.arange(count), 16)
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_write_images, [root] * len(chunks), chunks, [size] * len(chunks)))
    for i in rng.choice(count, TRUNCATED, replace=False):
        path = root / "images" / f"im{i}.jpg"
        path.write_bytes(path.read_bytes()[:300])


def _write_images(root: Path, rows: np.ndarray, size: int) -> None:
    rng = np.random.default_rng(int(rows[0]))
    for i in rows:
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        if rng.random() < 0.1:
            image = image.convert("L")
        image.save(root / "images" / f"im{i}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="also time a sweep up to its first trial")
    args = parser.parse_args()

    from visionsweep import data
    from visionsweep.config import DataConfig

    work = Path(tempfile.mkdtemp(prefix="vs-bench-"))
    try:
        started = time.perf_counter()
        generate(work / "photos", args.images, args.size)
        print(f"generated {args.images} JPEGs {args.size}x{args.size} in {time.perf_counter() - started:.1f} s", flush=True)
        settings = dict(dataset=str(work / "photos"), image_size=args.size, on_bad_image="skip",
                        decode_workers=args.workers)
        first, cached = [], []
        for run in range(args.runs):
            config = DataConfig(**settings, cache_dir=str(work / f"cache{run}"))
            for times in (first, cached):
                started = time.perf_counter()
                dataset = data.load(config)
                times.append(time.perf_counter() - started)
        report = {
            "images": args.images, "size": args.size, "workers": args.workers, "runs": args.runs,
            "first_seconds": [round(t, 2) for t in first], "cached_seconds": [round(t, 2) for t in cached],
            "first_images_per_s": round(args.images / np.median(first)),
            "cached_images_per_s": round(args.images / np.median(cached)),
            "decoded_shape": list(dataset.images.shape), "summary": dataset.summary,
        }
        print(json.dumps(report), flush=True)
        if args.sweep:
            print(json.dumps(time_to_first_trial(work, settings)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def time_to_first_trial(work: Path, settings: dict) -> dict:
    from mlflow.tracking import MlflowClient

    from visionsweep import data, tracking
    from visionsweep.config import parse_config
    from visionsweep.orchestrator import run_sweep

    config = parse_config({
        "name": "bench-first-trial",
        "data": {**settings, "cache_dir": str(work / "cache0")},
        "model_params": {"n_conv": 1, "channels": 4, "dense": 0},
        "train": {"threshold": "per_class"},
        "search": {"trials": 1, "metric": "val_micro_f1"},
        "scheduler": {"kind": "fifo", "max_epochs": 1},
        "resources": {"concurrent": 1},
    })
    started = time.perf_counter()
    dataset = data.load(config.data)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    data.make_split(dataset, config.data.val_fraction, config.data.test_fraction, config.data.seed)
    split_seconds = time.perf_counter() - started
    uri = f"sqlite:///{work}/mlflow.db"
    wall_start = time.time()
    result = run_sweep(config, uri, storage_path=str(work / "ray"))
    client = MlflowClient(uri)
    first_trial = min(r.info.start_time for r in tracking.trial_runs(client, result.sweep_run_id)) / 1000
    parts = startup_parts(config, dataset, uri)
    return {
        **parts,
        "sweep_seconds_before_first_trial": round(first_trial - wall_start, 2),
        "startup_seconds_logged_by_sweep": round(client.get_run(result.sweep_run_id).data.metrics.get("startup_seconds", -1), 2),
        "of_which_cached_dataset_load_seconds": round(load_seconds, 2),
        "of_which_split_seconds": round(split_seconds, 2),
        "sweep_wall_seconds": round(result.wall_seconds, 1),
        "trial_outcomes": [r.outcome.value for r in result.records],
    }


def startup_parts(config, dataset, uri: str) -> dict:
    """Each step run_sweep takes before the Tuner starts, timed alone (Ray restarted to time ray.init)."""
    import ray

    from visionsweep import data, tracking
    from visionsweep.orchestrator import local_ray_auth

    seconds = {}

    def timed(name, step):
        started = time.perf_counter()
        value = step()
        seconds[f"step_{name}_seconds"] = round(time.perf_counter() - started, 2)
        return value

    split = data.make_split(dataset, config.data.val_fraction, config.data.test_fraction, config.data.seed)
    timed("fingerprint", dataset.fingerprint)
    client, experiment = tracking.connect(uri, "bench-startup-parts")
    timed("mlflow_sweep_run", lambda: tracking.start_sweep(client, experiment, config, dataset, split))
    ray.shutdown()
    local_ray_auth()  # as run_sweep's own Ray: token auth on
    timed("ray_init", lambda: ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False))
    arrays = {f"x_{part}": dataset.images[getattr(split, part)] for part in ("train", "val", "test")}
    timed("object_store_put", lambda: ray.put(arrays))
    ray.shutdown()
    return seconds


if __name__ == "__main__":
    main()
