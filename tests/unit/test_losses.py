"""Focal and asymmetric losses against hand computation, their gradients, and pos_weight from label counts."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from visionsweep.config import TrainConfig
from visionsweep.data import imbalance
from visionsweep.task import MultiClass, MultiLabel
from visionsweep.trainables import losses
from visionsweep.trainables.recipe import Loss, make_loss

LOGITS = [[2.0, -1.0, 0.0], [-3.0, 0.5, 1.5]]
TARGETS = [[1, 0, 1], [0, 0, 1]]


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def by_hand(gamma_pos, gamma_neg, clip, weights=(1, 1, 1)):
    """The asymmetric loss of LOGITS and TARGETS, one element at a time."""
    terms = []
    for row, targets in zip(LOGITS, TARGETS):
        for label, (x, t) in enumerate(zip(row, targets)):
            p = sigmoid(x)
            if t:
                terms.append(-weights[label] * (1 - p) ** gamma_pos * math.log(p))
            else:
                shifted = max(p - clip, 0)
                terms.append(-(shifted**gamma_neg) * math.log(1 - shifted))
    return sum(terms) / len(terms)


def test_focal_and_asymmetric_losses_match_hand_computation():
    logits, targets = torch.tensor(LOGITS), torch.tensor(TARGETS, dtype=torch.float32)
    assert losses.focal(logits, targets, multilabel=True, gamma=2.0).item() == pytest.approx(by_hand(2, 2, 0))
    assert losses.asymmetric(logits, targets, gamma_pos=1, gamma_neg=4, clip=0.05).item() == pytest.approx(
        by_hand(1, 4, 0.05))
    weights = torch.tensor([3.0, 1.0, 0.5])
    assert losses.asymmetric(logits, targets, 0, 4, 0.05, weights=weights).item() == pytest.approx(
        by_hand(0, 4, 0.05, weights.tolist()))
    # gamma 0 (and no clip) is BCE itself, pos_weight included
    assert losses.focal(logits, targets, True, gamma=0.0, weights=weights).item() == pytest.approx(
        nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights).item())
    # a negative the model scores below clip adds nothing: logit -3 is p = 0.047
    only_easy = losses.asymmetric(torch.tensor([[-3.0]]), torch.tensor([[0.0]]), clip=0.05)
    assert only_easy.item() == 0.0


def test_softmax_focal_loss_for_classes():
    logits, labels = torch.tensor(LOGITS), torch.tensor([0, 2])
    one_hot = nn.functional.one_hot(labels, 3).float()
    probs = logits.softmax(1)
    expected = -((1 - probs[[0, 1], labels]) ** 2 * probs[[0, 1], labels].log()).mean()
    assert losses.focal(logits, one_hot, multilabel=False, gamma=2.0).item() == pytest.approx(expected.item())
    assert Loss("focal", 3, False)(logits, labels).item() == pytest.approx(expected.item())  # indices become one-hot
    assert losses.focal(logits, one_hot, False, gamma=0.0).item() == pytest.approx(
        nn.functional.cross_entropy(logits, labels).item())


@pytest.mark.parametrize("kind", ["focal", "asymmetric"])
@pytest.mark.parametrize("multilabel", [True, False])
def test_gradients_stay_finite_at_extreme_logits_and_small_exponents(kind, multilabel):
    recipe = TrainConfig(loss=kind, focal_gamma=0.5, asl_gamma_pos=0.5, asl_gamma_neg=0.3, asl_clip=0.05,
                         label_smoothing=0.1)
    loss_fn = make_loss(recipe, (MultiLabel if multilabel else MultiClass)("abcd"), class_weights=[1.0, 2.0, 5.0, 50.0])
    logits = torch.tensor([[100.0, -100.0, 0.0, -3.0], [-40.0, 40.0, 1e-6, 20.0]], requires_grad=True)
    labels = torch.tensor([[1, 0, 0, 0], [0, 1, 1, 0]]) if multilabel else torch.tensor([0, 3])
    loss = loss_fn(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() >= 0
    assert torch.isfinite(logits.grad).all()


def test_balanced_pos_weight_is_negatives_over_positives_per_label():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]], np.uint8)
    weights = imbalance.loss_weights(labels, 3)
    assert weights.tolist() == pytest.approx([2 / 3, 4.0, 1.0])  # 3 of 5, 1 of 5, none (nothing to balance)
    logits, target = torch.randn(5, 3), torch.as_tensor(labels)
    for kind in ("bce", "focal", "asymmetric"):
        weighted = make_loss(TrainConfig(loss=kind), MultiLabel("abc"), class_weights=weights)
        assert torch.equal(weighted.weights, torch.as_tensor(weights))
    bce = make_loss(TrainConfig(loss="bce"), MultiLabel("abc"), class_weights=weights)(logits, target)
    assert bce.item() == pytest.approx(nn.functional.binary_cross_entropy_with_logits(
        logits, target.float(), pos_weight=torch.as_tensor(weights)).item())


def test_the_recipe_passes_its_focusing_settings():
    logits, targets = torch.tensor(LOGITS), torch.tensor(TARGETS)
    recipe = TrainConfig(loss="asymmetric", asl_gamma_pos=1.0, asl_gamma_neg=2.0, asl_clip=0.1)
    assert make_loss(recipe, MultiLabel("abc"))(logits, targets).item() == pytest.approx(by_hand(1, 2, 0.1))
    assert make_loss(TrainConfig(loss="focal", focal_gamma=3.0), MultiLabel("abc"))(logits, targets).item() == pytest.approx(
        by_hand(3, 3, 0))
