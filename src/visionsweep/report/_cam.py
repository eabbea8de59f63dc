"""Class activation maps: where in an image a trained model looked for a class (Grad-CAM, Selvaraju et al. 2017).

Grad-CAM weighs a convolutional layer's feature maps by the mean gradient of the class score over each map.
Where the head is a global average pool followed by a linear layer this is CAM itself (Zhou et al. 2016): the
weights are the linear layer's. The layer is found by inspection - the last module, in the order the forward
pass runs them, whose output is a 4-D map larger than 1 x 1 (so: before the global pool) - or named by the user
(`visionsweep explain --layer features.6`); built-in, timm and user models alike.

    layer = target_layer(model, example)                 # (name, module)
    heat = grad_cam(model, layer[1], images, classes)    # (N, H, W) in 0..1, at the input's size
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from visionsweep.task import is_multilabel


def target_layer(model: nn.Module, example: torch.Tensor, name: str | None = None) -> tuple[str, nn.Module]:
    """The layer to explain: `name` (a key of model.named_modules()), else the last one with a spatial 4-D output."""
    modules = dict(model.named_modules())
    if name is not None:
        if name not in modules or name == "":
            spatial = ", ".join(_spatial_layers(model, example)[-8:])
            raise LookupError(f"layer {name!r} is not in the model; its last layers with feature maps: {spatial}")
        return name, modules[name]
    found = _spatial_layers(model, example)
    if not found:
        raise LookupError("no layer of the model gives a feature map larger than 1 x 1: name one with --layer")
    return found[-1], modules[found[-1]]


def _spatial_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the modules whose output is (N, C, H, W) with H * W > 1, in the order the forward pass ends them."""
    order, hooks = [], []
    for name, module in model.named_modules():
        if name:
            def record(module, args, output, name=name):
                if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[2] * output.shape[3] > 1:
                    order.append(name)
            hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(reversed(order)))[::-1]  # a module run twice counts where it ran last


def grad_cam(model: nn.Module, layer: nn.Module, images: torch.Tensor, classes: list[int]) -> np.ndarray:
    """Heat maps (N, H, W) in 0..1 at the images' size: for image i, where `layer` supports class `classes[i]`."""
    saved = {}

    def keep(module, args, output):
        saved["maps"] = output
        output.register_hook(lambda grad: saved.__setitem__("grads", grad))

    hook = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)  # gradients flow even through a frozen backbone
            logits = model(x)
            model.zero_grad(set_to_none=True)
            logits[torch.arange(len(classes)), torch.as_tensor(classes)].sum().backward()
    finally:
        hook.remove()
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    maps, grads = saved["maps"].detach().float(), saved["grads"].float()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    heat = F.relu((weights * maps).sum(dim=1, keepdim=True))
    heat = F.interpolate(heat, size=images.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    peak = heat.flatten(1).max(dim=1).values.clamp_min(1e-12)
    return (heat / peak[:, None, None]).numpy()


@dataclass
class Example:
    """One test image to explain: its row, the class its map is for, and what the model got."""

    row: int
    label: int  # the class (label) this example is shown for
    cls: int  # the class whose evidence the heat map shows: `label`, or a mistaken class's
    correct: bool
    title: str


def pick_examples(labels: np.ndarray, probs: np.ndarray, classes: list[str], thresholds=0.5) -> list[Example]:
    """Per class (per label, multi-label): its surest correct test image and its surest mistake.

    Multi-class: correct = true and predicted class c (map for c); mistake = true c, predicted d (map for d, what
    the model saw instead). Multi-label: correct = c present and predicted; mistake = c missed or wrongly given,
    whichever the model was surer of (map for c).
    """
    examples = []
    if not is_multilabel(labels):
        predicted = probs.argmax(axis=1)
        for c, name in enumerate(classes):
            right = np.flatnonzero((labels == c) & (predicted == c))
            wrong = np.flatnonzero((labels == c) & (predicted != c))
            if len(right):
                row = right[np.argmax(probs[right, c])]
                examples.append(Example(int(row), c, c, True, f"{name}: right ({probs[row, c]:.2f})"))
            if len(wrong):
                row = wrong[np.argmax(probs[wrong, predicted[wrong]])]
                guess = int(predicted[row])
                examples.append(Example(int(row), c, guess, False,
                                        f"{name}: taken for {classes[guess]} ({probs[row, guess]:.2f})"))
        return examples
    cut = np.broadcast_to(np.asarray(thresholds, dtype=float), (probs.shape[1],))
    given, present = probs >= cut, labels.astype(bool)
    for c, name in enumerate(classes):
        right = np.flatnonzero(present[:, c] & given[:, c])
        wrong = np.flatnonzero(present[:, c] != given[:, c])
        if len(right):
            row = right[np.argmax(probs[right, c])]
            examples.append(Example(int(row), c, c, True, f"{name}: found ({probs[row, c]:.2f})"))
        if len(wrong):
            row = wrong[np.argmax(np.abs(probs[wrong, c] - cut[c]))]
            kind = "missed" if present[row, c] else "wrongly given"
            examples.append(Example(int(row), c, c, False, f"{name}: {kind} ({probs[row, c]:.2f})"))
    return examples
