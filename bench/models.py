"""Parameter count and forward time per batch of every registered model at its default parameters.

What: one forward pass (eval mode, no gradients) over a batch of 64 random images, 3 x 32 x 32 (the smallest
size every torchvision backbone accepts; the models' default parameters otherwise), 10 classes.
On: this machine's CPU with torch limited to `--threads` threads (default 2, the CI machine's cores).
Runs: 1 warm-up pass, then `--runs` timed passes (default 5); the table shows the median and the fastest.
Build: seconds to construct the model (weight initialisation), once.

    flock /tmp/visionsweep-heavy.lock python bench/models.py [--threads 2] [--runs 5] [--batch 64] [--size 32]
"""

import argparse
import platform
import statistics
import time

import torch

from visionsweep import models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads; "
          f"batch {args.batch} x 3 x {args.size} x {args.size}, 10 classes; 1 warm-up + {args.runs} timed forward passes")
    print(f"| model | parameters | build s | forward ms/batch (median) | fastest ms | images/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in models.names():
        started = time.perf_counter()
        model = models.create(name, num_classes=10, in_channels=3, image_size=args.size).eval()
        build = time.perf_counter() - started
        parameters = sum(p.numel() for p in model.parameters())
        times = []
        with torch.no_grad():
            model(images)
            for _ in range(args.runs):
                started = time.perf_counter()
                model(images)
                times.append(time.perf_counter() - started)
        median = statistics.median(times)
        print(f"| {name} | {parameters:,} | {build:.2f} | {median * 1000:.1f} | {min(times) * 1000:.1f} | "
              f"{args.batch / median:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
