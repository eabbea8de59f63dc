"""Training-step time under each memory format and precision the trainable can use, as ratios to plain float32.

What: one SGD step (forward, loss, backward, update) of a model over a batch of random images, timed three
ways in the same process: contiguous float32 (the layout torch gives by default), channels-last float32 (what
the trainable uses on every device), channels-last with bfloat16 autocast (`train.precision: bf16`).
On: this machine's CPU, torch limited to `--threads` threads (default 1: a trial's share with
`resources.cpu: 1`). Whether bf16 pays depends on the CPU: Intel AMX (Xeon 4th generation and later) has
bfloat16 matrix units; without them autocast emulates and is slower than float32.
Models: the quality benchmark's CNN on 28 x 28 gray images (batch 256), the overhead benchmark's wide CNN on
8 x 8 digits (batch 32), and resnet18 on 32 x 32 RGB (batch 64).
Runs: 3 warm-up steps, then `--steps` timed steps (default 10) per way, interleaved over `--rounds` rounds
(default 3) so that a busy moment of the shared machine hits every way alike; the median step is reported.

    python bench/precision.py [--threads 1] [--steps 10] [--rounds 3]
"""

import argparse
import statistics
import time

import _record  # noqa: F401  (puts src/ on the path)
import torch
from torch.nn import functional as F

from visionsweep import models

WORKLOADS = {  # name: (model, its parameters, batch, channels, image size)
    "quality cnn, 28x28 gray": ("cnn", {"n_conv": 3, "channels": 32, "channel_growth": 2.0, "dense": 128,
                                        "batchnorm": True}, 256, 1, 28),
    "overhead cnn, 8x8 gray": ("cnn", {"n_conv": 2, "channels": 128, "dense": 256}, 32, 1, 8),
    "resnet18, 32x32 rgb": ("resnet18", {}, 64, 3, 32),
}
WAYS = {  # name: (memory format, bf16 autocast)
    "fp32 contiguous": (torch.contiguous_format, False),
    "fp32 channels-last": (torch.channels_last, False),
    "bf16 channels-last": (torch.channels_last, True),
}


def step_seconds(model, optimizer, images, labels, bf16: bool, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.threads} "
          f"thread(s); median of {args.rounds} x {args.steps} steps per way, after 3 warm-up steps")
    print("| model | " + " | ".join(f"{way} ms/step" for way in WAYS) + " | channels-last speed-up | bf16 speed-up |")
    print("|---|" + "---:|" * (len(WAYS) + 2))
    for label, (name, params, batch, channels, size) in WORKLOADS.items():
        torch.manual_seed(0)
        model = models.create(name, num_classes=10, in_channels=channels, image_size=size, **params)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        images, labels = torch.randn(batch, channels, size, size), torch.randint(0, 10, (batch,))
        times = {way: [] for way in WAYS}
        for _ in range(args.rounds):
            for way, (memory_format, bf16) in WAYS.items():
                model = model.to(memory_format=memory_format)
                batch_images = images.contiguous(memory_format=memory_format)
                step_seconds(model, optimizer, batch_images, labels, bf16, 3)
                times[way] += step_seconds(model, optimizer, batch_images, labels, bf16, args.steps)
        medians = {way: statistics.median(t) for way, t in times.items()}
        base = medians["fp32 contiguous"]
        print(f"| {label} | " + " | ".join(f"{1000 * m:.1f}" for m in medians.values())
              + f" | {base / medians['fp32 channels-last']:.2f}x | {base / medians['bf16 channels-last']:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
