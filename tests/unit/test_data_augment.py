"""Augmentation keeps shapes and labels right; mixing mixes label vectors; imbalance weights follow counts."""

import numpy as np
import pytest
import torch

from visionsweep.data import imbalance
from visionsweep.data.augment import AugmentConfig, Augmenter, offline_copies

EVERYTHING = dict(hflip=0.5, vflip=0.5, rotation=20, translate=0.1, scale=0.2, shear=10, crop=0.6,
                  brightness=0.3, contrast=0.3, noise=0.05)


@pytest.mark.parametrize("setting", list(EVERYTHING))
def test_each_augmentation_keeps_shape_range_and_labels(setting):
    torch.manual_seed(0)
    images, labels = torch.rand(6, 3, 12, 12), torch.tensor([0, 1, 2, 0, 1, 2])
    augmenter = Augmenter(AugmentConfig(**{setting: EVERYTHING[setting]}), 12, 3, multilabel=False)
    out, targets = augmenter(images, labels)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1 and not torch.equal(out, images)
    assert torch.equal(targets, labels)


def test_random_parameters_are_drawn_per_image():
    torch.manual_seed(0)
    image = torch.rand(1, 1, 10, 10)
    out = Augmenter(AugmentConfig(rotation=45), 10, 2, False).transform(image.repeat(8, 1, 1, 1))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8


@pytest.mark.parametrize("setting, dim", [("hflip", -1), ("vflip", -2)])
def test_flips_act_on_the_batch_with_a_draw_per_image(setting, dim):
    torch.manual_seed(0)
    image = torch.rand(1, 2, 6, 6)
    out = Augmenter(AugmentConfig(**{setting: 0.5}), 6, 2, False).transform(image.repeat(64, 1, 1, 1))
    flipped = [torch.equal(o, image[0].flip(dim)) for o in out]
    assert all(f or torch.equal(o, image[0]) for f, o in zip(flipped, out))  # each image whole: flipped or not
    assert 16 < sum(flipped) < 48


def test_no_augmentation_is_inactive():
    assert not Augmenter(AugmentConfig(), 8, 3, False).active


@pytest.mark.parametrize("mixing", [{"cutmix": 1.0}, {"mixup": 1.0}, {"cutmix": 1.0, "mixup": 0.4}])
def test_mixing_mixes_multilabel_vectors(mixing):
    torch.manual_seed(1)
    images = torch.stack([torch.full((1, 8, 8), float(i) / 8) for i in range(8)])
    labels = torch.eye(8, 4)  # rows 0-3 one label each, rows 4-7 no label
    out, targets = Augmenter(AugmentConfig(**mixing), 8, 4, multilabel=True)(images, labels)
    assert out.shape == images.shape and targets.shape == (8, 4) and targets.dtype == torch.float32
    assert torch.all(targets >= 0) and torch.all(targets <= 1)
    assert not torch.equal(targets, labels)  # label vectors were mixed with the pixels
    # each target is a convex mix of two original label vectors: its mass is at most 1
    assert torch.all(targets.sum(dim=1) <= 1 + 1e-6)


def test_mixing_multiclass_gives_mixed_one_hot_targets():
    torch.manual_seed(2)
    out, targets = Augmenter(AugmentConfig(mixup=1.0), 8, 5, False)(torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0]))
    assert targets.shape == (6, 5) and torch.allclose(targets.sum(dim=1), torch.ones(6))


def test_offline_copies_expand_training_rows_with_their_labels():
    images, labels = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8), torch.eye(5, 3)
    augmenter = Augmenter(AugmentConfig(hflip=1.0), 8, 3, True)
    more, more_labels = offline_copies(images, labels, augmenter, 2)
    assert more.shape == (15, 1, 8, 8) and more.dtype == torch.uint8 and torch.equal(more_labels, labels.repeat(3, 1))
    assert torch.equal(more[5:10], images.flip(-1)) and torch.equal(more[:5], images)


def test_balanced_weights_and_oversampling_follow_counts():
    labels = np.array([0] * 8 + [1] * 2)
    np.testing.assert_allclose(imbalance.loss_weights(labels, 3), [10 / 16, 10 / 4, 1.0])
    draws = imbalance.sample_weights(labels, 3, power=1.0)
    assert draws[labels == 0].sum() == pytest.approx(draws[labels == 1].sum())  # each class equally often
    multi = np.array([[1, 0], [1, 0], [1, 1], [0, 0]], np.uint8)
    np.testing.assert_allclose(imbalance.loss_weights(multi, 2), [1 / 3, 3.0])
    np.testing.assert_allclose(imbalance.sample_weights(multi, 2, 1.0), [1 / 3, 1 / 3, 1.0, 1.0])
    assert np.all(imbalance.sample_weights(multi, 2, 0.0) == 1)


def test_channel_stats_in_chunks_match_numpy():
    from visionsweep.trainables import channel_stats

    images = np.random.default_rng(0).integers(0, 256, (50, 6, 6, 3), dtype=np.uint8)
    mean, std = channel_stats(images, chunk=7)
    pixels = images.reshape(-1, 3) / 255
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(std, pixels.std(axis=0) + 1e-6, rtol=1e-6)
