"""Grad-CAM: the layer found by inspection or by name, maps that point where the evidence is, examples per class."""

import numpy as np
import pytest
import torch
from torch import nn

from visionsweep import models
from visionsweep.report._cam import grad_cam, pick_examples, target_layer


class PooledNet(nn.Module):
    """A user's model: one 1x1 conv (the identity), global average pool, a linear head for two classes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))

    def forward(self, x):
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))


def test_map_points_at_the_evidence_for_a_class_and_nowhere_against_it():
    image = torch.zeros(1, 1, 8, 8)
    image[..., :3, :3] = 1.0  # the bright corner is all the evidence for class 0, and against class 1
    model = PooledNet()
    name, layer = target_layer(model, image)
    assert name == "conv"  # the pool's 1 x 1 output is not a map; relu is a function here, not a module
    heat = grad_cam(model, layer, image.repeat(2, 1, 1, 1), [0, 1])
    assert heat.shape == (2, 8, 8) and heat[0].max() == pytest.approx(1.0)
    assert heat[0, :3, :3].mean() > 0.8 and heat[0, 5:, 5:].max() < 0.2
    assert heat[1].max() == 0.0
    assert model.training and all(p.grad is None for p in model.parameters())  # as it was: mode kept, no grads


@pytest.mark.parametrize("name, params, expected", [
    ("cnn", {"n_conv": 2, "channels": 8}, None),
    ("resnet18", {}, "layer3"),  # at 32 px layer4's map is 1 x 1: the last map is layer3's (2 x 2)
    ("timm/test_resnet", {}, None),
])
def test_layer_found_by_inspection_in_built_in_and_timm_models(name, params, expected):
    model = models.create(name, num_classes=3, in_channels=3, image_size=32, **params).eval()
    example = torch.randn(2, 3, 32, 32)
    found, layer = target_layer(model, example)
    if expected:
        assert found.endswith(expected), found
    heat = grad_cam(model, layer, example, [0, 2])
    assert heat.shape == (2, 32, 32) and np.all((heat >= 0) & (heat <= 1))


def test_a_named_layer_is_used_and_a_wrong_name_lists_the_candidates():
    model = PooledNet()
    assert target_layer(model, torch.zeros(1, 1, 8, 8), "conv")[0] == "conv"
    with pytest.raises(LookupError, match="layer 'nope' is not in the model; its last layers with feature maps: conv"):
        target_layer(model, torch.zeros(1, 1, 8, 8), "nope")


def test_examples_per_class_right_and_wrong():
    labels = np.array([0, 0, 1, 1, 2])
    probs = np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    picked = [(e.row, e.label, e.cls, e.correct) for e in pick_examples(labels, probs, ["a", "b", "c"])]
    # class b's mistake is row 2, taken for a: its map shows what made the model say a
    assert picked == [(0, 0, 0, True), (3, 1, 1, True), (2, 1, 0, False), (4, 2, 2, True)]


def test_examples_per_label_found_and_missed_or_wrongly_given():
    labels = np.array([[1, 0], [1, 1], [0, 1]])
    probs = np.array([[0.9, 0.8], [0.2, 0.7], [0.1, 0.9]])
    picked = [(e.row, e.label, e.correct, e.title) for e in pick_examples(labels, probs, ["cat", "dog"], [0.5, 0.5])]
    assert picked == [(0, 0, True, "cat: found (0.90)"), (1, 0, False, "cat: missed (0.20)"),
                      (2, 1, True, "dog: found (0.90)"), (0, 1, False, "dog: wrongly given (0.80)")]
