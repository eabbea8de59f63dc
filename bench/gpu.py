"""GPU: trials per hour at fractional GPUs, the trainable's throughput against a bare PyTorch loop, bfloat16
against float32, and peak GPU memory per trial.

Measures, on one GPU, in one process and this order:
(b) throughput: the trainable (visionsweep.trainables.train_classifier, called in this process with a Trial
    whose reports go to a list instead of Ray Tune, as bench/overhead.py's bare pass does) against a plain PyTorch loop
    written below, on the same device, model, data (the uint8 training rows on the device), augmentation
    (horizontal flips on the device, a draw per image), batch, optimizer, schedule, loss and precision.
    Training images/s counts the training passes alone: each of the trainable's `Member.train_epoch` calls,
    timed between CUDA synchronisations, against the same for the plain loop's epochs; the first epoch of
    each run (CUDA kernels chosen, memory reserved) is left out. Two rounds, in the order trainable, loop,
    loop, trainable; the median epoch of each side is reported.
        gpu_throughput_ratio = trainable images/s / plain loop images/s   (target >= 0.9; best 1.0)
(c) precision: the trainable's training images/s with train.precision bf16 (bfloat16 autocast, channels-last)
    against fp32, one run each after (b); the plain loop the same way.
(d) memory: torch.cuda.max_memory_allocated over a whole in-process trial (data on the device, model,
    training, predictions) in bf16 and fp32; during each sweep of (a), the device's memory in use as
    nvidia-smi reports it every 0.5 s (every trial's CUDA context included).
(a) trials per hour: one sweep (visionsweep.orchestrator.run_sweep, FIFO, sqlite MLflow, one Ray instance for
    all sweeps) of the same N configs from a seeded random sampler at resources.gpu 1, 0.5, 0.25 and 0.125,
    with resources.concurrent = 1 / gpu and resources.cpu 1 per trial;
        trials per hour = N / the sweep's Tuner.fit seconds (`tune_seconds`: data loading, MLflow and
                          ray.init come once per sweep, not per trial, and are recorded beside it)
        gpu_trials_per_hour_ratio = the best fractional setting's trials per hour / gpu 1's   (target >= 2)
    A sweep is skipped when the one before it says it would end past `--budget-s`.
Workload: Fashion-MNIST (54,000 training, 6,000 validation and the 10,000 given test rows), the quality
benchmark's CNN (three conv blocks of 32-64-128 channels with batchnorm, dense 128), SGD Nesterov with
one-cycle, label smoothing 0.1, batch 256, horizontal flips; precision auto (bf16 on a GPU) unless (c) says.
Runs: (b) 2 rounds (--quick: 1) of 1 + `--epochs` epochs per side; (c) 1 run per precision; (a) one sweep per setting of
`--trials` trials (default 8) x `--epochs` epochs (default 3).
Machine: one GPU; written for a device lent for minutes (bench/gpu_device.sh installs and runs it there).
Planned to finish in under 8 minutes on one H200; not yet measured there (README, GPU).
--quick: digits on this machine's CPU (device "cpu"; Ray gets one logical GPU so that the fractional
settings 1 and 0.5 schedule), 2 trials of 1 epoch: the same code path, a check that the script works.
On a machine without CUDA no GPU figure goes into summary.json; the record holds the CPU figures.
"""

import contextlib
import statistics
import subprocess
import tempfile
import threading
import time

from _record import parse_args, save
from _sweeps import planned_params, sweep_config, trial_data

import ray
import torch
from mlflow.tracking import MlflowClient
from torch.nn import functional as F

from visionsweep import models
from visionsweep.orchestrator import local_ray_auth, run_sweep
from visionsweep.outcome import Outcome
from visionsweep.trainables import Trial, classifier, train_classifier

TARGET_TRIALS_RATIO = 2.0
TARGET_THROUGHPUT_RATIO = 0.9
FRACTIONS = (1, 0.5, 0.25, 0.125)  # resources.gpu per trial
QUICK_FRACTIONS = (1, 0.5)
FLIP = 0.5  # probability of a horizontal flip: clothing looks the same mirrored


def options(parser):
    parser.add_argument("--trials", type=int, help="trials per sweep (default 8; quick 2)")
    parser.add_argument("--epochs", type=int, help="epochs per trial and timed epochs per run (default 3; quick 1)")
    parser.add_argument("--budget-s", type=float, default=420, help="skip the sweeps that would end later (seconds)")


def workload(quick: bool, trials: int, epochs: int, gpu: float = 1, precision: str = "auto"):
    return sweep_config(
        "bench-gpu",
        data={"dataset": "digits" if quick else "fashion_mnist", "val_fraction": 0.1},
        model_params={"n_conv": 3, "channels": 32, "channel_growth": 2.0, "dense": 128, "batchnorm": True},
        train={"optimizer": "sgd", "batch_size": 256, "schedule": "onecycle", "label_smoothing": 0.1,
               "precision": precision},
        augment={"hflip": FLIP},
        # lr and the seed vary between trials; the work per trial does not.
        space={"lr": {"loguniform": [0.05, 0.5]}, "seed": {"int": [0, 10_000]}},
        search={"sampler": "random", "trials": trials, "seed": 0},
        scheduler={"kind": "fifo", "max_epochs": epochs},
        resources={"cpu": 1, "gpu": gpu, "concurrent": max(1, round(1 / gpu))},
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def timed_training_passes(device: torch.device, seconds: list):
    """Each `Member.train_epoch` of the trainable timed between synchronisations: its training pass alone."""
    original = classifier.Member.train_epoch

    def timed(member, *args, **kwargs):
        synchronize(device)
        started = time.perf_counter()
        loss = original(member, *args, **kwargs)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
        return loss

    classifier.Member.train_epoch = timed
    try:
        yield
    finally:
        classifier.Member.train_epoch = original


def trainable_run(config, params: dict, data, device: torch.device) -> dict:
    """One whole trial in this process: its training passes' seconds (first left out), its wall and peak memory."""
    seconds, reports = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    with timed_training_passes(device, seconds):
        train_classifier(params, Trial(data, config, send=lambda result, folder: reports.append(result)))
    synchronize(device)
    wall = time.perf_counter() - started
    if len(reports) != config.scheduler.max_epochs:
        raise RuntimeError(f"the trainable reported {len(reports)} epochs of {config.scheduler.max_epochs}")
    return {
        "epoch_seconds": seconds[1:],
        "trial_seconds": wall,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "final_val_accuracy": reports[-1]["val_accuracy"],
    }


def plain_loop(config, params: dict, arrays, device: torch.device, epochs: int) -> list[float]:
    """Seconds of each epoch (first left out) of the trainable's work written as a plain PyTorch loop."""
    recipe, model_params = config.trial_settings(params)
    if recipe.optimizer != "sgd" or recipe.schedule != "onecycle":
        raise ValueError("the plain loop is written for sgd with one-cycle")
    torch.manual_seed(recipe.seed)
    x = torch.as_tensor(arrays.x_train, device=device).permute(0, 3, 1, 2)  # uint8 (N, C, H, W), on the device
    y = torch.as_tensor(arrays.y_train, device=device)
    pixels = x.float().div(255)
    mean, std = pixels.mean(dim=(0, 2, 3))[:, None, None], pixels.std(dim=(0, 2, 3))[:, None, None] + 1e-6
    del pixels
    bf16 = recipe.precision == "bf16" or (recipe.precision == "auto" and device.type == "cuda")
    model = models.create(config.model, num_classes=len(arrays.classes), in_channels=x.shape[1],
                          image_size=x.shape[2], multilabel=False, **model_params).to(device)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    steps = -(-len(x) // recipe.batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                                weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=steps * epochs,
                                                   base_momentum=0.85, max_momentum=0.95)
    seconds = []
    for _ in range(epochs):
        synchronize(device)
        started = time.perf_counter()
        model.train()
        total = torch.zeros((), device=device)
        for rows in torch.randperm(len(x), device=device).split(recipe.batch_size):
            images = x[rows].float().div_(255)
            flipped = torch.rand(len(rows), device=device) < FLIP
            images = (torch.where(flipped[:, None, None, None], images.flip(-1), images) - mean) / std
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(images), y[rows], label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.detach().float() * len(rows)
        total.item()
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


class DeviceMemory:
    """The most device memory in use (MiB, all processes) while the block runs, read from nvidia-smi."""

    def __init__(self, device: torch.device, every_s: float = 0.5):
        self.enabled, self.every_s, self.peak_mb = device.type == "cuda", every_s, None
        self._stop = threading.Event()

    def read(self) -> float | None:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5, check=True).stdout
            return float(out.split()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None

    def _watch(self):
        while not self._stop.wait(self.every_s):
            used = self.read()
            if used is not None:
                self.peak_mb = max(self.peak_mb or 0.0, used)

    def __enter__(self):
        if self.enabled:
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()


def images_per_s(rows: int, seconds: list[float]) -> float:
    return rows / statistics.median(seconds)


def throughput(quick: bool, epochs: int, device: torch.device) -> dict:
    """Parts (b), (c) and (d): the trainable against the plain loop, bf16 against fp32, memory per trial."""
    timed = workload(quick, 1, 1 + epochs)
    params = planned_params(timed)[0]
    arrays = trial_data(timed)
    rows = len(arrays.x_train)
    trainable, plain, trials = [], [], []
    rounds = ("trainable", "plain") if quick else ("trainable", "plain", "plain", "trainable")  # drift hits both alike
    for first in rounds:
        if first == "trainable":
            trials.append(trainable_run(timed, params, arrays, device))
            trainable += trials[-1]["epoch_seconds"]
        else:
            plain += plain_loop(timed, params, arrays, device, 1 + epochs)
    by_precision = {}
    for precision in ("bf16", "fp32"):
        config = workload(quick, 1, 1 + epochs, precision=precision)
        run = trainable_run(config, params, arrays, device)
        by_precision[precision] = {
            "trainable_images_per_s": round(images_per_s(rows, run["epoch_seconds"]), 1),
            "plain_images_per_s": round(images_per_s(rows, plain_loop(config, params, arrays, device, 1 + epochs)), 1),
            "trial_seconds": round(run["trial_seconds"], 2),
            "peak_memory_mb": None if run["peak_memory_mb"] is None else round(run["peak_memory_mb"], 1),
            "final_val_accuracy": round(run["final_val_accuracy"], 4),
        }
    ratio = images_per_s(rows, trainable) / images_per_s(rows, plain)
    return {
        "training_rows": rows,
        "trainable_images_per_s": round(images_per_s(rows, trainable), 1),
        "plain_images_per_s": round(images_per_s(rows, plain), 1),
        "throughput_ratio": round(ratio, 4),
        "trainable_epoch_seconds": [round(s, 4) for s in trainable],
        "plain_epoch_seconds": [round(s, 4) for s in plain],
        # a whole trial: its training passes plus validation, test predictions and checkpoints each epoch
        "trial_images_per_s": round(rows * (1 + epochs) / statistics.median(t["trial_seconds"] for t in trials), 1),
        "precision": by_precision,
        "bf16_speedup": round(by_precision["bf16"]["trainable_images_per_s"]
                              / by_precision["fp32"]["trainable_images_per_s"], 3),
    }


def sweeps(quick: bool, trials: int, epochs: int, device: torch.device, deadline: float) -> dict:
    """Part (a): the same configs swept at each GPU fraction, in one Ray instance."""
    settings = {}
    last_seconds = 0.0
    for gpu in QUICK_FRACTIONS if quick else FRACTIONS:
        config = workload(quick, trials, epochs, gpu=gpu)
        if time.monotonic() + last_seconds > deadline:
            settings[str(gpu)] = {"skipped": "the budget would be exceeded"}
            continue
        with tempfile.TemporaryDirectory() as folder, DeviceMemory(device) as memory:
            uri = f"sqlite:///{folder}/mlflow.db"
            started = time.monotonic()
            result = run_sweep(config, uri, storage_path=f"{folder}/ray")
            last_seconds = time.monotonic() - started
            phases = MlflowClient(uri).get_run(result.sweep_run_id).data.metrics
        complete = result.count(Outcome.COMPLETE)
        settings[str(gpu)] = {
            "concurrent": config.resources.concurrent,
            "trials_complete": complete,
            "trials_per_hour": round(3600 * complete / phases["tune_seconds"], 1),
            "tune_seconds": round(phases["tune_seconds"], 2),
            "startup_seconds": round(phases["startup_seconds"], 2),
            "sweep_wall_seconds": round(result.wall_seconds, 2),
            "peak_device_memory_mb": memory.peak_mb,
        }
        if complete != trials:
            raise RuntimeError(f"gpu {gpu}: {complete} of {trials} trials complete: {settings[str(gpu)]}")
    return settings


def environment(device: torch.device) -> dict:
    found = {"device": str(device), "torch": torch.__version__, "ray": ray.__version__}
    if device.type == "cuda":
        found.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                     gpu_memory_gb=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1))
    return found


def main():
    args = parse_args(__doc__, options)
    trials = args.trials or (2 if args.quick else 8)
    epochs = args.epochs or (1 if args.quick else 3)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    deadline = time.monotonic() + args.budget_s
    result = {"environment": environment(device), "trials": trials, "epochs": epochs}

    result["throughput"] = throughput(args.quick, epochs, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the trials of the sweeps are other processes: leave them the memory
    # One Ray for every sweep; without CUDA a logical GPU lets the fractional settings schedule (a dry run).
    local_ray_auth()  # as run_sweep's own Ray: token auth on, a token of this run's own
    ray.init(num_gpus=None if device.type == "cuda" else 1, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        result["sweeps"] = sweeps(args.quick, trials, epochs, device, deadline)
    finally:
        ray.shutdown()

    measured = {gpu: s["trials_per_hour"] for gpu, s in result["sweeps"].items() if "trials_per_hour" in s}
    fractional = {gpu: rate for gpu, rate in measured.items() if gpu != "1"}
    best = max(fractional, key=fractional.get) if fractional else None
    trials_ratio = round(fractional[best] / measured["1"], 3) if best else None
    throughput_ratio = result["throughput"]["throughput_ratio"]
    on_gpu = device.type == "cuda"
    met = None
    if on_gpu and trials_ratio is not None:
        met = trials_ratio >= TARGET_TRIALS_RATIO and throughput_ratio >= TARGET_THROUGHPUT_RATIO
    per_setting = ", ".join(f"gpu {gpu}: {rate:.0f}/h" for gpu, rate in measured.items())
    save(
        args,
        "gpu",
        {
            "measures": "trials/hour at fractional GPUs (best over gpu 1); the trainable's training images/s over "
                        "a plain PyTorch loop; bf16 over fp32; peak memory per trial",
            "headline": (f"{'' if on_gpu else 'dry run on cpu, not a GPU figure: '}trials/hour x{trials_ratio} "
                         f"(gpu {best}; {per_setting}); throughput {throughput_ratio:.2f} of plain PyTorch; "
                         f"bf16 x{result['throughput']['bf16_speedup']}"),
            "target": f"trials/hour ratio >= {TARGET_TRIALS_RATIO}, throughput ratio >= {TARGET_THROUGHPUT_RATIO}",
            "met": met,
            "runs": f"2 rounds trainable vs plain loop, 1 run per precision, 1 sweep per gpu setting of {trials} "
                    f"trials x {epochs} epochs",
            "trials_per_hour_ratio": trials_ratio,
            "best_fraction": best,
            **result,
        },
        # Figures from a CPU dry run are no GPU figures.
        summary={"gpu_trials_per_hour_ratio": trials_ratio, "gpu_throughput_ratio": throughput_ratio} if on_gpu else {},
    )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"gpu: {time.monotonic() - started:.0f} s")
