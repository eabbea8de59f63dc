"""Trainable throughput: training images per second of the project's trainable against a bare PyTorch loop.

Measures, in one process, one thread, alternating so that drift weighs on both sides:
- the trainable's training path: Training.build, then each epoch's Member.train_epoch as
  visionsweep.trainables.train_classifier calls them (uint8 batches to floats, the Augmenter, normalisation,
  the recipe's loss, optimizer and schedule);
- a bare loop: the same model (models.create, same seed), data (the sweep's split), augmentation (the same
  Augmenter), optimizer and batch size, written as a tutorial would: shuffled passes of training steps.
    trainable_throughput_ratio = trainable images/s / bare images/s (the fastest round of each: the one the
    shared machine disturbed least; the median of the rounds' paired ratios is recorded too)
Also whole epochs: train_classifier with a Trial whose reports go to a list (no Ray, no MLflow; checkpoint
files written when it persists one: validation scores, test predictions on improving epochs) against the
bare loop with a validation accuracy after each epoch (`whole_epoch_ratio`).
Also the augmentation alone, old against new: the per-image torchvision v2 pipeline (one call per image, as
data/augment.py did before its batched ops) against the batched Augmenter.transform, ms per batch on the
sweep's images and on 32x32 RGB ones, and the bare loop's images/s with each.
Machine: the project's shared machine (2 cores, 24 GB, no GPU), under /tmp/visionsweep-heavy.lock.
Runs: full: Fashion-MNIST subset (3,000 training and 1,000 test images, 28x28), 5 rounds of 2 epochs each side
after a warm-up;
--quick: digits, 1 round of 1 epoch.
Theoretical best: 1.0 (the trainable adds nothing per image to the loop); target >= 0.95.
"""

import statistics
import time

import torch
from _record import parse_args, save
from _sweeps import register_subset, sweep_config, trial_data
from torchvision.transforms import v2

from visionsweep import models
from visionsweep.data.augment import AugmentConfig, Augmenter
from visionsweep.trainables import Trial, train_classifier
from visionsweep.trainables.classifier import Training

TARGET = 0.95
AUGMENT = {"hflip": 0.5, "rotation": 10, "translate": 0.1, "crop": 0.8, "brightness": 0.2, "contrast": 0.2}
PARAMS = {"lr": 0.05}


def options(parser):
    parser.add_argument("--rounds", type=int, help="timed rounds of each side (default 5; quick 1)")
    parser.add_argument("--epochs", type=int, help="epochs per round (default 2; quick 1)")


def workload(quick: bool, epochs: int):
    dataset = "digits" if quick else register_subset("fashion_mnist", 3000, 1000)
    return sweep_config(
        "bench-throughput",
        data={"dataset": dataset},
        model="cnn",
        model_params={"n_conv": 2, "channels": 32, "dense": 128},
        train={"batch_size": 64, "schedule": "constant", "precision": "fp32"},
        augment=AUGMENT,
        scheduler={"kind": "fifo", "max_epochs": epochs},
        resources={"cpu": 1, "concurrent": 1},
    )


def run_trainable(config, data, whole: bool) -> float:
    """Seconds of the trainable's epochs: its training passes alone (Training.build, then each member's
    train_epoch, as train_classifier calls them), or `whole` train_classifier (validation scores, test
    predictions on improving epochs, reports)."""
    reports = []
    trial = Trial(data, config, send=lambda result, folder: reports.append(result))
    if whole:
        started = time.perf_counter()
        train_classifier(PARAMS, trial)
        assert len(reports) == config.scheduler.max_epochs
        return time.perf_counter() - started
    training = Training.build(PARAMS, trial)
    started = time.perf_counter()
    for epoch in range(1, config.scheduler.max_epochs + 1):
        for member in training.members:
            member.train_epoch(epoch, training.preprocess.batch)
    return time.perf_counter() - started


def run_bare(config, data, whole: bool, augmenter=None) -> float:
    """Seconds of a plain loop's epochs over the same model, data, augmentation and optimizer settings: its
    training passes alone, or `whole` with the validation accuracy after each."""
    recipe, model_params = config.trial_settings(PARAMS)
    augmenter = augmenter or Augmenter(config.augment, data.image_size, data.task.num_classes, False)
    torch.manual_seed(recipe.seed)
    model = models.create(config.model, **data.model_shape, **model_params)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    mean = torch.tensor(data.normalization["mean"])[:, None, None]
    std = torch.tensor(data.normalization["std"])[:, None, None]
    x = torch.as_tensor(data.x_train).permute(0, 3, 1, 2)
    y = torch.as_tensor(data.y_train)
    started = time.perf_counter()
    if whole:
        x_val = (torch.as_tensor(data.x_val).permute(0, 3, 1, 2).float() / 255 - mean) / std
        y_val = torch.as_tensor(data.y_val)
    for _ in range(config.scheduler.max_epochs):
        model.train()
        for batch in torch.randperm(len(x)).split(recipe.batch_size):
            images, target = augmenter(x[batch].float() / 255, y[batch])
            loss = torch.nn.functional.cross_entropy(model((images - mean) / std), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if whole:
            model.eval()
            with torch.no_grad():
                accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
            assert 0 <= accuracy <= 1
    return time.perf_counter() - started


class PerImage(Augmenter):
    """The augmentation as it was: flips on the batch, then torchvision v2's pipeline called once per image."""

    def __init__(self, augment: AugmentConfig, image_size: int, num_classes: int):
        super().__init__(augment, image_size, num_classes, False)
        steps = [v2.RandomAffine(degrees=augment.rotation, translate=(augment.translate,) * 2),
                 v2.RandomResizedCrop(image_size, scale=(augment.crop, 1.0), antialias=True),
                 v2.ColorJitter(brightness=augment.brightness, contrast=augment.contrast)]
        self.pipeline = v2.Compose(steps)

    def transform(self, images):
        for dim, p in self.flips:
            flipped = torch.rand(len(images)) < p
            images = torch.where(flipped[:, None, None, None], images.flip(dim), images)
        return torch.stack([self.pipeline(image) for image in images])


def augment_ms(augmenter: Augmenter, images: torch.Tensor, batch: int, repeats: int) -> float:
    """Median ms per batch of `augmenter.transform`."""
    times = []
    for _ in range(repeats):
        for chunk in images.split(batch):
            started = time.perf_counter()
            augmenter.transform(chunk)
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main():
    args = parse_args(__doc__, options)
    rounds = args.rounds or (1 if args.quick else 5)
    epochs = args.epochs or (1 if args.quick else 2)
    torch.set_num_threads(1)  # as a trial with resources.cpu 1 runs
    config = workload(args.quick, epochs)
    data = trial_data(config)
    images = len(data.x_train) * epochs
    augment = AugmentConfig(**AUGMENT)
    old = PerImage(augment, data.image_size, data.task.num_classes)

    warm = config.model_copy(update={"scheduler": config.scheduler.model_copy(update={"max_epochs": 1})})
    run_trainable(warm, data, True), run_bare(warm, data, True)  # first use of the kernels and the data
    speed = {side: [] for side in ("trainable", "bare", "trainable_whole", "bare_whole", "bare_per_image")}
    for _ in range(rounds):  # alternating, so that the machine's drift weighs on every side alike
        speed["bare"].append(images / run_bare(config, data, False))
        speed["trainable"].append(images / run_trainable(config, data, False))
        speed["bare_whole"].append(images / run_bare(config, data, True))
        speed["trainable_whole"].append(images / run_trainable(config, data, True))
        speed["bare_per_image"].append(images / run_bare(config, data, False, old))
    # The fastest round of each side: the one the shared machine disturbed least.
    best = {side: max(values) for side, values in speed.items()}
    ratio = best["trainable"] / best["bare"]
    whole_ratio = best["trainable_whole"] / best["bare_whole"]
    paired = statistics.median(t / b for t, b in zip(speed["trainable"], speed["bare"]))

    sample = torch.as_tensor(data.x_train[:512]).permute(0, 3, 1, 2).float() / 255
    rgb32 = torch.rand(512, 3, 32, 32)
    augmentation = {}
    for name, batch in (("sweep_images", sample), ("rgb_32px", rgb32)):
        size = batch.shape[-1]
        new_ms = augment_ms(Augmenter(augment, size, 10, False), batch, 64, 1 if args.quick else 3)
        old_ms = augment_ms(PerImage(augment, size, 10), batch, 64, 1 if args.quick else 3)
        augmentation[name] = {"size": list(batch.shape[1:]), "per_image_ms_per_batch": round(old_ms, 2),
                              "batched_ms_per_batch": round(new_ms, 2), "speedup": round(old_ms / new_ms, 1)}
    end_to_end = best["bare"] / best["bare_per_image"]
    save(
        args,
        "throughput",
        {
            "measures": "training images/s of the trainable's training passes / a bare PyTorch loop's, same model, "
                        "data, augmentation; fastest of the rounds of each",
            "headline": f"{ratio:.3f} ({best['trainable']:.0f} vs {best['bare']:.0f} images/s; with validation, "
                        f"test predictions and reports {whole_ratio:.3f}); batched augmentation "
                        f"{augmentation['sweep_images']['speedup']}x the per-image one ({end_to_end:.2f}x the loop's images/s)",
            "target": f">= {TARGET}",
            "met": ratio >= TARGET,
            "runs": f"{rounds} rounds x {epochs} epochs of each side, alternating, {config.data.dataset}",
            "trainable_throughput_ratio": round(ratio, 4),
            "paired_median_ratio": round(paired, 4),  # median over rounds of trainable / bare in the same round
            "whole_epoch_ratio": round(whole_ratio, 4),
            "images_per_second": {side: [round(v, 1) for v in values] for side, values in speed.items()},
            "batched_over_per_image_loop_speed": round(end_to_end, 3),
            "augmentation": augmentation,
            "augment": AUGMENT,
            "training_images": len(data.x_train),
            "image_shape": [data.image_size, data.image_size, data.channels],
        },
        summary={"trainable_throughput_ratio": round(ratio, 4)},
    )


if __name__ == "__main__":
    main()
