import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from visionsweep import models
from visionsweep.config import TrainConfig
from visionsweep.trainables.classifier import Member, aggregate
from visionsweep.trainables.recipe import EarlyStopping, Fitting, Loss, make_optimizer, make_schedule


def lrs(recipe: TrainConfig, steps_per_epoch=4, epochs=4, val_losses=None):
    """The learning rate at every step of a schedule (plateau sees `val_losses`, one per epoch)."""
    optimizer = make_optimizer(recipe, [nn.Parameter(torch.zeros(1))])
    schedule = make_schedule(recipe, optimizer, steps_per_epoch, epochs)
    seen = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.after_batch()
        schedule.after_epoch(val_losses[epoch] if val_losses else 1.0)
    return seen, optimizer


@pytest.mark.parametrize("name, kind, options", [
    ("sgd", torch.optim.SGD, {"nesterov": True, "momentum": 0.9}),
    ("adam", torch.optim.Adam, {"amsgrad": False}),
    ("amsgrad", torch.optim.Adam, {"amsgrad": True}),
    ("adamw", torch.optim.AdamW, {"weight_decay": 5e-4}),
    ("rmsprop", torch.optim.RMSprop, {"momentum": 0.9}),
])
def test_optimizers(name, kind, options):
    optimizer = make_optimizer(TrainConfig(optimizer=name), [nn.Parameter(torch.zeros(1))])
    assert type(optimizer) is kind
    assert all(optimizer.defaults[k] == v for k, v in options.items())
    assert make_optimizer(TrainConfig(momentum=0.0), [nn.Parameter(torch.zeros(1))]).defaults["nesterov"] is False


def test_schedules_shape_the_learning_rate():
    constant, _ = lrs(TrainConfig(schedule="constant", lr=0.1))
    assert constant == [0.1] * 16
    cosine, _ = lrs(TrainConfig(schedule="cosine", lr=0.1))
    assert cosine[0] == 0.1 and all(a >= b for a, b in zip(cosine, cosine[1:])) and cosine[-1] < 0.01
    step, _ = lrs(TrainConfig(schedule="step", lr=0.1, step_epochs=2, step_gamma=0.5))
    assert step[:8] == [0.1] * 8 and step[8:] == pytest.approx([0.05] * 8)
    onecycle, optimizer = lrs(TrainConfig(schedule="onecycle", lr=0.1))
    peak = int(np.argmax(onecycle))
    assert onecycle[0] < 0.01 and onecycle[peak] == pytest.approx(0.1, rel=1e-2) and 0 < peak < 15 and onecycle[-1] < 1e-4
    warm, _ = lrs(TrainConfig(schedule="cosine", lr=0.1, warmup_epochs=1))
    assert warm[0] == pytest.approx(0.001) and warm[:5] == sorted(warm[:5]) and warm[4] == pytest.approx(0.1, rel=1e-2)
    plateau, _ = lrs(TrainConfig(schedule="plateau", lr=0.1, plateau_patience=1, plateau_factor=0.5),
                     val_losses=[1.0, 1.0, 1.0, 1.0])
    # epoch 1 sets the best loss; epoch 2 is the one tolerated epoch without improvement; epoch 3 reduces
    assert plateau[:12] == [0.1] * 12 and plateau[12:] == pytest.approx([0.05] * 4)


def test_cyclic_schedules_cycle_momentum_against_the_learning_rate():
    recipe = TrainConfig(schedule="cyclic", lr=0.1, cycle_epochs=1, momentum=0.9)
    optimizer = make_optimizer(recipe, [nn.Parameter(torch.zeros(1))])
    schedule = make_schedule(recipe, optimizer, steps_per_epoch=4, epochs=2)
    trace = []
    for _ in range(8):
        trace.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
        optimizer.step()
        schedule.after_batch()
    assert trace[0] == pytest.approx((0.01, 0.95)) and trace[2] == pytest.approx((0.1, 0.85))
    assert trace[4] == pytest.approx(trace[0])  # a full cycle is one epoch
    adam = make_optimizer(TrainConfig(optimizer="adam", schedule="onecycle"), [nn.Parameter(torch.zeros(1))])
    make_schedule(TrainConfig(optimizer="adam", schedule="onecycle"), adam, 4, 2)
    assert adam.param_groups[0]["betas"][0] == pytest.approx(0.95)  # beta1 plays momentum's part


def test_losses():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    ce = Loss("cross_entropy", 3, False)(logits, labels)
    assert ce == pytest.approx(nn.functional.cross_entropy(logits, labels))
    one_hot = nn.functional.one_hot(labels, 3).float()
    assert Loss("bce", 3, False)(logits, labels) == pytest.approx(
        nn.functional.binary_cross_entropy_with_logits(logits, one_hot))
    assert Loss("mse", 3, False)(logits, labels) == pytest.approx(((logits.softmax(1) - one_hot) ** 2).mean())
    smoothed = Loss("bce", 3, False, label_smoothing=0.3)(logits, labels)
    assert smoothed == pytest.approx(nn.functional.binary_cross_entropy_with_logits(logits, one_hot * 0.7 + 0.1))
    multi_hot = torch.tensor([[1, 0, 1], [0, 0, 0]], dtype=torch.uint8)
    assert Loss("auto", 3, True)(logits, multi_hot) == pytest.approx(
        nn.functional.binary_cross_entropy_with_logits(logits, multi_hot.float()))
    weighted = Loss("cross_entropy", 3, False, class_weights=[1.0, 1.0, 3.0])(logits, labels)
    assert weighted == pytest.approx(nn.functional.cross_entropy(logits, labels, weight=torch.tensor([1.0, 1.0, 3.0])))
    with pytest.raises(ValueError, match="cross_entropy needs single-label data; use bce or mse"):
        Loss("cross_entropy", 3, True)


def test_early_stopping_counts_epochs_without_an_improvement_above_min_delta():
    stopping = EarlyStopping(patience=2, min_delta=0.01)
    assert [stopping.update(s) for s in [0.5, 0.6, 0.605, 0.61, 0.7, 0.7, 0.69]] == [
        False, False, False, True, False, False, True]
    assert not any(EarlyStopping(patience=0).update(0.1) for _ in range(5))


def test_two_phase_fine_tuning_trains_the_head_first_then_all_at_a_lower_lr():
    model = models.create("mobilenet_v3_small", num_classes=3, in_channels=1, image_size=32, freeze="all_but_last_n",
                          unfreeze_last_n=2)
    trainable_at_build = {n for n, p in model.named_parameters() if p.requires_grad}
    fitting = Fitting(TrainConfig(lr=0.1, head_epochs=2, unfreeze_lr_factor=10, schedule="constant"), model, 3, 5)
    head_names = {f"head.{n}" for n, _ in model.head.named_parameters()}
    for epoch in (1, 2):
        fitting.start_epoch(epoch)
        assert {n for n, p in model.named_parameters() if p.requires_grad} == head_names and fitting.lr == 0.1
    state = fitting.state_dict()
    fitting.start_epoch(3)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable_at_build > head_names
    assert fitting.lr == pytest.approx(0.01) and fitting.phase == 2
    resumed = Fitting(TrainConfig(lr=0.1, head_epochs=2, schedule="constant"), model, 3, 5)
    resumed.load_state_dict(fitting.state_dict())
    assert resumed.phase == 2 and resumed.lr == pytest.approx(0.01) and state["phase"] == 1
    with pytest.raises(ValueError, match="needs a model with a head"):
        Fitting(TrainConfig(head_epochs=1), models.create("cnn", num_classes=3, in_channels=1, image_size=8), 3, 5)
    with pytest.raises(ValueError, match="head_epochs 5 leaves no epoch"):
        Fitting(TrainConfig(head_epochs=5), model, 3, 5)


def test_repeats_aggregate_mean_and_std_over_seeds():
    per_seed = [{"val_accuracy": 0.8, "val_loss": 0.5}, {"val_accuracy": 0.9, "val_loss": 0.3},
                {"val_accuracy": 0.7, "val_loss": 0.4}]
    assert aggregate(per_seed) == pytest.approx({
        "val_accuracy": 0.8, "val_loss": 0.4, "val_accuracy_std": math.sqrt(0.02 / 3), "val_loss_std": math.sqrt(0.02 / 3)})
    assert aggregate(per_seed[:1]) == per_seed[0]  # one seed: no std columns


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle", "cyclic", "step", "plateau"])
def test_every_schedule_resumes_from_a_weights_only_checkpoint(schedule, tmp_path):
    """A trial resumes from torch.load(weights_only=True): the recipe's state must be plain tensors and data."""
    recipe = TrainConfig(schedule=schedule, warmup_epochs=1 if schedule != "onecycle" else 0)
    model = nn.Linear(2, 2)
    fitting = Fitting(recipe, model, steps_per_epoch=3, max_epochs=4)
    for _ in range(4):
        model(torch.ones(1, 2)).sum().backward()
        fitting.step()
    fitting.end_epoch(0.5)
    torch.save(fitting.state_dict(), tmp_path / "state.pt")
    resumed = Fitting(recipe, model, steps_per_epoch=3, max_epochs=4)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert resumed.lr == pytest.approx(fitting.lr)


@pytest.mark.parametrize("precision, bf16", [("auto", False), ("fp32", False), ("bf16", True)])
def test_precision_on_a_cpu(precision, bf16):
    """bf16: bfloat16 autocast with channels-last weights, and it still learns; auto means fp32 on a CPU."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(96) % 3
    images = (torch.rand(96, 1, 8, 8, generator=generator) * 80 + 80 * labels[:, None, None, None]).to(torch.uint8)
    fold = SimpleNamespace(x_train=images, y_train=labels, draw_weights=None, loss_fn=nn.CrossEntropyLoss())
    torch.manual_seed(0)
    model = models.create("cnn", num_classes=3, in_channels=1, image_size=8, multilabel=False, channels=8)
    recipe = TrainConfig(precision=precision, batch_size=16, lr=0.05, schedule="constant")
    member = Member(model, fold, recipe, seed=0, max_epochs=4)
    second_conv = [m for m in member.model.modules() if isinstance(m, nn.Conv2d)][1]  # (16, 8, 3, 3): layouts differ
    assert second_conv.weight.is_contiguous(memory_format=torch.channels_last) is bf16
    with member.autocast:
        assert (member.model(images[:2].float()).dtype == torch.bfloat16) is bf16
    losses = [member.train_epoch(epoch, lambda x, y: (x.float() / 255, y)) for epoch in range(1, 5)]
    assert losses[-1] < 0.5 * losses[0], losses
